"""The safety-net schedule: a periodic retrain unless one already ran in the period."""

from datetime import datetime, timezone

import dagster as dg

from retrain_assets.constants import RETRAIN_JOB, RETRAIN_SCHEDULE
from retrain_assets.core import policy
from retrain_assets.core.fleet import FleetSettings
from retrain_assets.jobs import ModelJobs, single_jobs
from retrain_assets.names import SINGLE, ModelNames, with_model_resources_of
from retrain_assets.resources import RetrainSettings
from retrain_assets.state import fleet_budget_spent, retrain_history, retrain_tags


def build_retrain_schedule(cron: str, timezone_name: str, names: ModelNames = SINGLE, jobs: ModelJobs | None = None,
                           fleet: FleetSettings | None = None) -> dg.ScheduleDefinition:
    """The safety net: a periodic retrain unless one already ran in the period (or the fleet's budget is spent)."""
    jobs = jobs or single_jobs()

    @dg.schedule(
        name=names.name(RETRAIN_SCHEDULE),
        cron_schedule=cron,
        execution_timezone=timezone_name,
        job=jobs.retrain,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Safety-net retrain (automation.schedule_cron), skipped with the reason when a retrain ran in the period.",
    )
    @with_model_resources_of(names)
    def safety_net_retrain(context: dg.ScheduleEvaluationContext, settings: RetrainSettings):
        """Safety-net retrain, skipped when a retrain already ran in the period."""
        cfg = settings.load()
        history, running = retrain_history(context.instance, names)
        now = context.scheduled_execution_time or datetime.now(timezone.utc)
        due, reason = policy.schedule_due(now, history, cfg.automation.policy())
        if not due:
            return dg.SkipReason(reason)
        if running:
            return dg.SkipReason("skipped: a retrain is queued or running")
        spent = fleet_budget_spent(context.instance, fleet, now)
        if spent:
            return dg.SkipReason(f"{reason} — skipped: {spent}")
        return dg.RunRequest(run_key=f"schedule:{now:%Y%m%dT%H%M}", job_name=names.name(RETRAIN_JOB),
                             tags=retrain_tags("schedule", reason))

    return safety_net_retrain
