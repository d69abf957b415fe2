"""Every kind of bad landed file in the corpus, through the real landing sensor and ingest job.

For each kind: the sensor tick does not raise; the outcome is the expected one (ignored with the
rule stated, refused, held back, rows quarantined, passed); the message a user reads names what is
wrong; the bytes that were landed are still somewhere under the workspace (landing folder or the
rejected area). The reference batches are a user's own data with no ranges declared, so the
platform must learn what is plausible from them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from pathlib import Path

import pytest

from retrain_assets.core import storage
from retrain_assets_tests import bad_input_corpus as corpus
from retrain_assets_tests.conftest import (
    Workspace,
    check_evaluation,
    clean_batch,
    definitions_for,
    failure_text,
    ingest,
    tick,
    write_config,
)

REFERENCE_BATCHES = 3


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _kept_hashes(root: Path) -> set[str]:
    found = set()
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and "state/mlflow" not in str(path):
            try:
                found.add(_sha(path))
            except OSError:
                pass
    return found


def _reasons(rejected: Path, batch_id: str) -> list[tuple[str, str]]:
    out = []
    if not rejected.exists():
        return out
    for reason_file in rejected.rglob("*.reason.json"):
        record = json.loads(reason_file.read_text())
        if record.get("batch_id") == batch_id or batch_id in record.get("file", ""):
            out.append((record.get("stage", ""), record.get("reason", "")))
    return out


class Replay:
    """One user's workspace with reference batches taken in, replaying corpus kinds one by one."""

    def __init__(self, root: Path, instance, caplog):
        config = write_config(root, **{"schema.ranges": {}})
        self.ws = Workspace(root=root, config_path=config)
        self.defs = definitions_for(config)
        self.instance = instance
        self.caplog = caplog
        self.cursor = None
        for index in range(1, REFERENCE_BATCHES + 1):
            self.ws.land(f"b{index:04d}", clean_batch(index))
        result = self._tick()
        for request in result.run_requests:
            run = ingest(self.defs, instance, request.partition_key, tags=request.tags)
            assert run.success, failure_text(run)

    def _tick(self):
        result = tick(self.defs, self.instance, self.cursor)
        self.cursor = result.cursor
        return result

    def outcome(self, kind: corpus.Kind, batch_id: str) -> dict:
        landing = self.ws.landing
        self.caplog.clear()
        dropped = kind.make(landing, batch_id)
        landed_hash = _sha(dropped) if dropped is not None and dropped.is_file() else None
        messages: list[str] = []
        try:
            result = self._tick()
        except Exception as error:  # the sensor must never raise
            return {"outcome": "sensor raised", "message": f"{type(error).__name__}: {error}", "kept": True}
        skip = result.skip_reason
        messages.append(getattr(skip, "skip_message", None) or str(skip or ""))
        ran = []
        for request in result.run_requests:
            run = ingest(self.defs, self.instance, request.partition_key, tags=request.tags)
            ran.append(request.partition_key)
            messages.append(failure_text(run))
            for materialization in run.get_asset_materialization_events():  # e.g. raw_data's `arrival`
                data = materialization.step_materialization_data.materialization
                messages.append(json.dumps({k: str(v.value) for k, v in data.metadata.items()}))
            messages.append(str(request.tags.get("retrain/reason", "")))
            evaluations = run.get_asset_check_evaluations()
            for evaluation in evaluations:
                messages.append(evaluation.description or "")
                messages.append(json.dumps({k: str(v.value) for k, v in evaluation.metadata.items()}))
        messages += [record.getMessage() for record in self.caplog.records]
        refusals = _reasons(self.ws.rejected, batch_id)
        messages += [reason for _, reason in refusals]
        with storage.duckdb.connect(str(self.ws.settings.duckdb_path)) as conn:
            statuses = storage.batch_statuses(conn)
            row = statuses[statuses.batch_id.isin(ran)]
            quarantine = storage.read_quarantine(conn, ran[0]) if ran else None
        if quarantine is not None and len(quarantine):
            messages += quarantine["reasons"].astype(str).head(5).tolist()
        if len(row):
            messages.append(str(row.iloc[0]["summary"]))
        if any(stage in ("landing_sensor", "raw_data") for stage, _ in refusals) or (ran and not len(row)):
            outcome = corpus.REFUSED
        elif len(row) and row.iloc[0]["passed"] is not True and not bool(row.iloc[0]["passed"]):
            outcome = corpus.HELD_BACK
        elif len(row) and int(row.iloc[0]["quarantined_rows"] or 0) > 0:
            outcome = corpus.QUARANTINED
        elif len(row):
            outcome = corpus.PASSED
        elif not ran and not refusals:
            outcome = corpus.IGNORED
        else:
            outcome = f"unclear (runs {ran}, refusals {refusals})"
        kept = landed_hash is None or landed_hash in _kept_hashes(self.ws.root)
        return {"outcome": outcome, "message": "\n".join(m for m in messages if m), "kept": kept}


def _verdict(kind: corpus.Kind, seen: dict) -> str | None:
    if seen["outcome"] not in kind.expect:
        return f"expected {kind.expect}, got {seen['outcome']}"
    text = seen["message"].lower()
    missing = [group for group in kind.words if not any(word.lower() in text for word in group)]
    if missing:
        return f"message lacks one of {missing}"
    if not seen["kept"]:
        return "the landed bytes are kept nowhere"
    return None


@pytest.mark.cli  # ~2 s a kind: in `make test`, not in the fast lane
def test_every_kind_of_bad_file(tmp_path, instance, caplog):
    caplog.set_level(logging.INFO, logger="dagster")
    replay = Replay(tmp_path, instance, caplog)
    failures, outcomes, rows = [], Counter(), []
    for index, kind in enumerate(corpus.kinds()):
        batch_id = kind.as_id or f"c{index:03d}-{kind.slug}"
        seen = replay.outcome(kind, batch_id)
        outcomes[seen["outcome"]] += 1
        problem = _verdict(kind, seen)
        if problem:
            failures.append(f"{batch_id} ({kind.what}): {problem}\n    message: {seen['message'][:400]!r}")
        rows.append({"batch_id": batch_id, "what": kind.what, "expected": list(kind.expect), **seen, "problem": problem})
    summary = f"{sum(outcomes.values())} kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
    if os.environ.get("RETRAIN_CORPUS_REPORT"):  # a person's look at every outcome and message
        Path(os.environ["RETRAIN_CORPUS_REPORT"]).write_text(json.dumps({"summary": summary, "kinds": rows}, indent=1))
    assert not failures, f"{len(failures)} kind(s) mishandled:\n" + "\n".join(failures)
