"""Asset checks. Each is computed in the step of the asset it judges and fails with severity WARN:
a landed file refused, a batch held back or a candidate refused is the platform doing its job, so
the run succeeds, the check shows the reason in words, and nothing downstream turns red
(docs/decisions.md, "Honest colours"). What stops bad data or a bad model is the rule, written once:
raw_data yields nothing for a refused file (so Dagster skips the steps after it), drift_report and
production_metrics skip a batch that has not passed validation (``storage.passed_batches``), and
production_model never moves the champion to a version whose gates did not all pass
(``core.promotion.check_promotable``). A crash, an outage or a person's impossible request (a
partition key that is not a batch id, a missing file) still fails its run.
"""

from __future__ import annotations

import math
from pathlib import Path

import dagster as dg

from retrain_assets.constants import CANDIDATE_MODEL, FILE_CHECK, RAW_DATA, VALIDATED_DATA, VALIDATION_GATE
from retrain_assets.core.candidate import GATE_DESCRIPTIONS, GATE_NAMES
from retrain_assets.core.gates import GateResult
from retrain_assets.core.validation import ValidationReport
from retrain_assets.core.markdown import inert, markdown_table
from retrain_assets.names import SINGLE, ModelNames

REFUSAL_SEVERITY = dg.AssetCheckSeverity.WARN
"""Severity of a held-back batch and a refused candidate: yellow, never red (see the module docstring)."""

def file_check_for(names: ModelNames) -> dg.AssetCheckSpec:
    """raw_data's check of its landed file."""
    return dg.AssetCheckSpec(
        name=FILE_CHECK,
        asset=names.key(RAW_DATA),
        description=(
            "The landed file was read and stored. A file that cannot be read, changed after the landing sensor saw "
            "it, or would rewrite an ingested batch is refused (moved to the rejected area when it can be), and "
            "nothing downstream runs on it."
        ),
    )


file_check = file_check_for(SINGLE)


def file_refused(reason: str, **metadata) -> dg.AssetCheckResult:
    """raw_data's verdict on a landed file it refused: the reason, in words, and where the file went."""
    return dg.AssetCheckResult(check_name=FILE_CHECK, passed=False, severity=REFUSAL_SEVERITY,
                               description=reason, metadata=metadata)


def validation_gate_for(names: ModelNames) -> dg.AssetCheckSpec:
    """validated_data's check: the batch passed validation."""
    return dg.AssetCheckSpec(
        name=VALIDATION_GATE,
        asset=names.key(VALIDATED_DATA),
        description=(
            "Holds the batch back (drift_report, production_metrics and training skip it) when its schema is broken, "
            "a batch rule fails (e.g. a NaN flood) or its share of quarantined rows exceeds "
            "validation.max_invalid_fraction."
        ),
    )


validation_gate = validation_gate_for(SINGLE)


def held_back_message(batch_id: str, what: str) -> str:
    """What a step downstream of validated_data logs when it skips a batch that did not pass."""
    return (f"batch {batch_id!r} has not passed validation (held back: the {VALIDATION_GATE} check on "
            f"{VALIDATED_DATA} says why): {what}, so this step is skipped")


def explain(report: ValidationReport, moved_to: Path | None = None) -> str:
    """Markdown a person reads: the verdict, then each failed rule with examples."""
    lines = [f"**{report.summary}.**", ""]
    lines.append(
        f"Quarantined {report.quarantined_rows} of {report.rows} rows ({report.invalid_fraction:.2%}); "
        f"the limit is {report.max_invalid_fraction:.2%}."
    )
    if report.schema_problems:
        lines += ["", "Schema problems (the whole batch is held back):"]
        lines += [f"- {p}" for p in report.schema_problems]
    failed = report.failed_rules
    if failed:
        lines += ["", "Failed expectations:"]
        lines += [f"- {o.sentence()} [{o.rule}, {o.level} rule]" for o in failed]
    if report.notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in report.notes]
    lines = [inert(line) for line in lines]  # values and column names come from the landed file
    if moved_to is not None:
        lines += ["", f"The landed file was moved to `{moved_to}`; its rows are in the `quarantine` table."]
    return "\n".join(lines)


def rules_table(report: ValidationReport) -> str:
    """Every rule of the suite with its outcome, as a Markdown table."""
    return markdown_table(
        [
            {
                "rule": o.rule,
                "column": o.column or "(table)",
                "level": o.level,
                "passed": "yes" if o.success else "NO",
                "rows failed": o.unexpected_count,
                "examples": ", ".join(f"row {r}: {v!r}" for r, v in o.examples),
            }
            for o in report.outcomes
        ]
    )


def validation_gate_result(report: ValidationReport, moved_to: Path | None = None) -> dg.AssetCheckResult:
    """The gate's verdict on one batch, with the reasons in numbers and words."""
    return dg.AssetCheckResult(
        check_name=VALIDATION_GATE,
        passed=report.passed,
        severity=REFUSAL_SEVERITY,
        description=report.summary,
        metadata={
            "explanation": dg.MetadataValue.md(explain(report, moved_to)),
            "rows": report.rows,
            "quarantined_rows": report.quarantined_rows,
            "invalid_fraction": float(round(report.invalid_fraction, 6)),
            "max_invalid_fraction": report.max_invalid_fraction,
            "schema_problems": dg.MetadataValue.json(report.schema_problems),
            "failed_rules": dg.MetadataValue.json([o.rule + (f" ({o.column})" if o.column else "") for o in report.failed_rules]),
        },
    )


# --------------------------------------------------------------------------
# Promotion gates: checks on candidate_model, computed in its step (they judge the model it just
# trained); production_model promotes only a version that passed all of them.
# --------------------------------------------------------------------------

def gate_specs_for(names: ModelNames) -> list[dg.AssetCheckSpec]:
    """The six promotion gates, checks on the model's candidate_model."""
    return [dg.AssetCheckSpec(name=name, asset=names.key(CANDIDATE_MODEL), description=GATE_DESCRIPTIONS[name])
            for name in GATE_NAMES]


gate_specs = gate_specs_for(SINGLE)


def gate_metadata(result: GateResult) -> dict[str, dg.MetadataValue | str | float | int | bool]:
    """A gate's numbers as metadata: tables as Markdown, dicts as JSON, the sentence first."""
    metadata: dict = {"summary": dg.MetadataValue.md(f"**{'PASS' if result.passed else 'FAIL'}** — {result.summary}")}
    metadata["waived"] = bool(result.waived)
    for key, value in result.metrics.items():
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, dict) for v in value):
            metadata[key] = dg.MetadataValue.md(markdown_table(list(value)))
        elif isinstance(value, dict):
            metadata[key] = dg.MetadataValue.json({str(k): v for k, v in value.items()})
        elif isinstance(value, (list, tuple)):
            metadata[key] = dg.MetadataValue.json(list(value))
        else:
            plain = GateResult("", True, "", {key: value}).as_metadata()[key]
            metadata[key] = plain if not (isinstance(plain, float) and math.isnan(plain)) else "undefined"
    return metadata


def gate_check_result(result: GateResult) -> dg.AssetCheckResult:
    """One gate as the result of its check."""
    return dg.AssetCheckResult(
        check_name=result.name,
        passed=bool(result.passed),
        severity=REFUSAL_SEVERITY,
        description=result.summary,
        metadata=gate_metadata(result),
    )
