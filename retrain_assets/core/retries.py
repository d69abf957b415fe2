"""Retrying a batch whose ingest failed for an outside reason. Pure Python (no Dagster).

A file refused by raw_data or a batch held back by validation is not a failure: its run succeeds
and its check says why. An ingest run fails in one of two ways:

* a **decision**: a deliberate refusal (a ``dagster.Failure``), e.g. a partition key that is not a
  batch id; runs recorded before refusals stopped failing their run (a failed check, or a
  ``dagster.Failure`` of raw_data) are read as decisions too. Retrying changes nothing; the run says
  what to do.
* an **outside cause**: the run worker was killed, the DuckDB file was locked by another program,
  the disk was full, the MLflow server was down. The batch is fine; once the cause is gone the same
  run succeeds.

The landing sensor retries the second kind with a doubling delay
(``automation.ingest_retry_minutes`` × 2^(attempt-1)), at most ``automation.ingest_retries`` times,
then lists the batch as waiting in every tick and alerts once, with the command that retries it
by hand. A batch never silently drops out of drift and training because its run key was spent.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FailedIngest:
    """The newest ingest run of a batch, which failed for an outside cause.

    Attributes:
        batch_id: The batch (partition key).
        run_id: The failed run.
        failed_at: When it ended (unix seconds).
        attempts: Consecutive runs of this batch that failed for an outside cause (1 = the first run).
        message: The failure, as the run reported it.
        file: The landed file the run read (run tag), if known.
        fingerprint: Its sha256 when the landing sensor saw it, if known.
    """

    batch_id: str
    run_id: str
    failed_at: float
    attempts: int
    message: str
    file: str | None = None
    fingerprint: str | None = None


@dataclass
class RetryPlan:
    """What the landing sensor does this tick about failed ingests."""

    retry: list[FailedIngest] = field(default_factory=list)
    waiting: list[tuple[FailedIngest, float]] = field(default_factory=list)  # (failure, seconds until due)
    given_up: list[FailedIngest] = field(default_factory=list)


def retry_delay_seconds(attempts: int, base_minutes: float) -> float:
    """Seconds to wait after the ``attempts``-th failed run before the next one."""
    return base_minutes * 60.0 * 2 ** max(attempts - 1, 0)


def plan_retries(failed: list[FailedIngest], now: float, *, max_retries: int, base_minutes: float) -> RetryPlan:
    """Which failed batches to retry now, which wait for their delay, and which have used every retry."""
    plan = RetryPlan()
    for item in sorted(failed, key=lambda f: f.batch_id):
        if item.attempts > max_retries:
            plan.given_up.append(item)
            continue
        due = item.failed_at + retry_delay_seconds(item.attempts, base_minutes)
        if due <= now:
            plan.retry.append(item)
        else:
            plan.waiting.append((item, due - now))
    return plan


def retry_reason(item: FailedIngest, max_retries: int) -> str:
    """The reason recorded on a retry run."""
    return (f"retry {item.attempts} of {max_retries} of batch {item.batch_id}: its ingest run {item.run_id[:8]} "
            f"failed for an outside reason ({_short(item.message)})")


def given_up_message(item: FailedIngest, max_retries: int, job_name: str) -> str:
    """What an operator reads about a batch that used every retry."""
    return (
        f"batch {item.batch_id!r} is NOT ingested: its ingest failed {item.attempts} times in a row for an outside "
        f"reason (last run {item.run_id[:8]}: {_short(item.message)}); after {max_retries} automatic retries the "
        f"platform stopped retrying. Fix the cause, then re-execute run {item.run_id} in the UI (Runs → "
        f"Re-execute) or run `dagster job execute -m retrain_assets.definitions -j {job_name} --tags "
        f"'{{\"dagster/partition\": \"{item.batch_id}\"}}'`; until then the batch is left out of drift and training"
    )


def waiting_summary(plan: RetryPlan) -> list[str]:
    """One line per batch waiting on a retry, for the sensor's skip message."""
    lines = [f"batch {item.batch_id!r} failed for an outside reason, retry {item.attempts} in {due / 60:.1f} min"
             for item, due in plan.waiting]
    return lines


def _short(message: str, limit: int = 240) -> str:
    text = " ".join((message or "failed").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
