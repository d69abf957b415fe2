"""Asset checks. The validation gate is computed in the validated_data step (it is that step's
verdict on the batch) and is blocking: a batch that fails it stops everything downstream in the run.
The six promotion gates are blocking checks on candidate_model, computed in its step, so a failing
gate stops production_model in the same run and the champion stays where it is."""

from __future__ import annotations

import math
from pathlib import Path

import dagster as dg

from retrain_assets.constants import CANDIDATE_MODEL, VALIDATED_DATA, VALIDATION_GATE
from retrain_assets.core.candidate import GATE_DESCRIPTIONS, GATE_NAMES
from retrain_assets.core.gates import GateResult
from retrain_assets.core.validation import ValidationReport
from retrain_assets.core.markdown import inert, markdown_table

validation_gate = dg.AssetCheckSpec(
    name=VALIDATION_GATE,
    asset=VALIDATED_DATA,
    blocking=True,
    description=(
        "Blocks downstream assets when a batch's schema is broken, a batch rule fails (e.g. a NaN flood) or "
        "its share of quarantined rows exceeds validation.max_invalid_fraction."
    ),
)


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
        asset_key=VALIDATED_DATA,
        passed=report.passed,
        severity=dg.AssetCheckSeverity.ERROR,
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
# Promotion gates: blocking checks on candidate_model, computed in its step (they judge the model
# it just trained), upstream of production_model in the same run.
# --------------------------------------------------------------------------

gate_specs = [
    dg.AssetCheckSpec(name=name, asset=CANDIDATE_MODEL, blocking=True, description=GATE_DESCRIPTIONS[name])
    for name in GATE_NAMES
]


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
    """One gate as the result of its blocking check."""
    return dg.AssetCheckResult(
        asset_key=CANDIDATE_MODEL,
        check_name=result.name,
        passed=bool(result.passed),
        severity=dg.AssetCheckSeverity.ERROR,
        description=result.summary,
        metadata=gate_metadata(result),
    )
