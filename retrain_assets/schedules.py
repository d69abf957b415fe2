"""The safety-net schedule: a periodic retrain unless one already ran in the period."""

from datetime import datetime, timezone

import dagster as dg

from retrain_assets.constants import RETRAIN_JOB, RETRAIN_SCHEDULE, TAG_REASON, TAG_TRIGGER
from retrain_assets.core import policy
from retrain_assets.jobs import retrain_job
from retrain_assets.resources import RetrainSettings
from retrain_assets.state import retrain_history


def build_retrain_schedule(cron: str, timezone_name: str) -> dg.ScheduleDefinition:
    """The safety net: a periodic retrain unless one already ran in the period."""

    @dg.schedule(
        name=RETRAIN_SCHEDULE,
        cron_schedule=cron,
        execution_timezone=timezone_name,
        job=retrain_job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Safety-net retrain (automation.schedule_cron), skipped with the reason when a retrain ran in the period.",
    )
    def safety_net_retrain(context: dg.ScheduleEvaluationContext, settings: RetrainSettings):
        """Safety-net retrain, skipped when a retrain already ran in the period."""
        cfg = settings.load()
        history, running = retrain_history(context.instance)
        now = context.scheduled_execution_time or datetime.now(timezone.utc)
        due, reason = policy.schedule_due(now, history, cfg.automation.policy())
        if not due:
            return dg.SkipReason(reason)
        if running:
            return dg.SkipReason("skipped: a retrain is queued or running")
        return dg.RunRequest(run_key=f"schedule:{now:%Y%m%dT%H%M}", job_name=RETRAIN_JOB,
                             tags={TAG_TRIGGER: "schedule", TAG_REASON: reason})

    return safety_net_retrain
