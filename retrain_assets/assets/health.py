"""model_health: "is my model healthy?" answered on one page — the verdict, the champion and since
when, its metric per batch (plot inline), drift over time, data and label freshness (two checks that
warn and alert), batches held back and why, open approvals, the last retrain, what the platform will
do next, what each sensor decided last and why, and what retraining cost by trigger. Refreshed after
every ingest and retrain and on a schedule."""

from datetime import datetime, timezone
from typing import Any

import dagster as dg
import pandas as pd
from dagster._core.scheduler.instigation import InstigatorType, TickStatus

from retrain_assets.constants import (
    APPROVAL_SENSOR,
    BUSINESS_CHANGE_SENSOR,
    CANDIDATE_MODEL,
    DRIFT_SENSOR,
    DRIFT_REPORT,
    LANDING_SENSOR,
    MODEL_HEALTH,
    MONITORING,
    PERFORMANCE_SENSOR,
    PRODUCTION_METRICS,
    PRODUCTION_MODEL,
    RAW_DATA,
    RETRAIN_JOB,
    TAG_REASON,
    TAG_TRIGGER,
)
from retrain_assets.core import approval, health, label_store, metrics_store, policy, registry as reg, report, storage
from retrain_assets.core.alerts import send_alert
from retrain_assets.core.ledger import read_ledger
from retrain_assets.core.markdown import markdown_table, png_markdown
from retrain_assets.resources import ModelRegistry, RetrainSettings, Warehouse
from retrain_assets.state import policy_state
from retrain_assets.names import SINGLE, ModelNames

BATCH_FRESHNESS = "batch_freshness"
LABEL_FRESHNESS = "label_freshness"
SHOWN_BATCHES = 12
DECIDING_SENSORS = (LANDING_SENSOR, DRIFT_SENSOR, PERFORMANCE_SENSOR, BUSINESS_CHANGE_SENSOR, APPROVAL_SENSOR)
"""The sensors whose newest decision (and its reason) the health page shows, in this order."""
FINISHED_TICKS = [TickStatus.SKIPPED, TickStatus.SUCCESS, TickStatus.FAILURE]
"""A tick still running (STARTED) has no outcome yet: the newest finished one is shown."""


def sensor_decisions(instance: dg.DagsterInstance, names: ModelNames = SINGLE) -> list[dict[str, str]]:
    """Each deciding sensor's newest tick: when, what it did and why, in words. The UI shows a tick
    as "0 runs requested" with the reason a click deeper; here the reason is on the page."""
    deciding = [names.name(sensor) for sensor in DECIDING_SENSORS]
    newest: dict[str, Any] = {}
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name not in deciding:
            continue
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1, statuses=FINISHED_TICKS)
        if ticks and (state.instigator_name not in newest or ticks[0].timestamp > newest[state.instigator_name].timestamp):
            newest[state.instigator_name] = ticks[0]
    rows = []
    for name in deciding:
        tick = newest.get(name)
        if tick is None:
            rows.append({"sensor": name, "last tick (UTC)": "", "decided": "no tick yet", "why": ""})
            continue
        if tick.status == TickStatus.SUCCESS and tick.run_ids:
            runs = [instance.get_run_by_id(run_id) for run_id in tick.run_ids[:3]]
            decided = f"requested {len(tick.run_ids)} run(s)"
            why = "; ".join(f"{r.job_name}: {r.tags.get(TAG_REASON, '')}" for r in runs if r is not None)
        elif tick.status == TickStatus.FAILURE:
            decided, why = "failed", (tick.error.message.strip() if tick.error else "")
        else:
            decided, why = "no run", tick.skip_reason or ""
        rows.append({"sensor": name, "last tick (UTC)": datetime.fromtimestamp(tick.timestamp, timezone.utc)
                     .strftime("%Y-%m-%d %H:%M:%S"), "decided": decided, "why": why[:400]})
    return rows


def held_back_batches(statuses: pd.DataFrame) -> pd.DataFrame:
    """Every batch held back by validation, with the reason (the check's verdict), oldest first."""
    held = statuses[statuses["passed"].notna() & ~statuses["passed"].fillna(True).astype(bool)]
    return held[["batch_id", "file_name", "rows", "summary"]].reset_index(drop=True)


def _champion_since(ledger: pd.DataFrame, champion: str | None) -> str:
    """When the champion last became champion (a done promotion or rollback to it), in words."""
    if champion is None or ledger.empty:
        return "no champion"
    moves = ledger[(ledger["status"] == "done") & ledger["action"].isin(["promote", "rollback"])
                   & (ledger["to_version"].astype(str) == str(champion))]
    if moves.empty:
        return "unknown (no ledger entry)"
    row = moves.iloc[-1]
    return f"{str(row['recorded_at'])[:19]} UTC ({row['action']}, {row.get('trigger') or 'manual'})"


def _retrains(records, ledger: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Every retrain that trained a candidate, from candidate_model's materialization records."""
    promoted = set(ledger.loc[(ledger["action"] == "promote") & (ledger["status"] == "done"), "to_version"].astype(str)) \
        if not ledger.empty else set()
    rows = []
    for record in records:
        meta = record.asset_materialization.metadata if record.asset_materialization is not None else {}
        value = lambda key, default=None: meta[key].value if key in meta else default  # noqa: E731
        version = str(value("version", ""))
        rows.append({
            "started_at": datetime.fromtimestamp(record.timestamp, timezone.utc),
            "trigger": value("trigger", "unknown"),
            "version": version,
            "fit_seconds": float(value("window_choice_seconds", value("training_seconds", 0.0)) or 0.0),
            "peak_memory_mb": float(value("training_peak_memory_mb", float("nan"))),
            "training_rows": float(value("training_rows", float("nan"))),
            "promoted": version in promoted,
            "bought": health.bought_by(metrics, version) if version in promoted else None,
        })
    return pd.DataFrame(rows, columns=list(health.COST_COLUMNS)).sort_values("started_at").reset_index(drop=True)


def _last_retrain(instance: dg.DagsterInstance, candidates, names: ModelNames = SINGLE) -> str:
    """The newest retrain run: when, why, and how it ended (its candidate among ``candidates``,
    candidate_model's materialization records)."""
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=names.name(RETRAIN_JOB)), limit=1)
    if not runs:
        return "no retrain has run yet"
    run = runs[0]
    record = instance.get_run_record_by_id(run.run_id)
    when = record.create_timestamp.strftime("%Y-%m-%d %H:%M UTC") if record is not None else "?"
    trigger = run.tags.get(TAG_TRIGGER, "manual")
    reason = run.tags.get(TAG_REASON, "launched by hand")
    outcome = run.status.value.lower()
    mine = [e for e in candidates if e.run_id == run.run_id and e.asset_materialization is not None]
    if mine:
        meta = mine[-1].asset_materialization.metadata
        version = meta["version"].value if "version" in meta else "?"
        failed = meta["failed_gates"].value if "failed_gates" in meta else []
        outcome = (f"v{version} failed gate(s) {', '.join(failed)}; the champion did not move" if failed
                   else f"v{version} passed every gate ({outcome})")
    return f"{when}, trigger {trigger} ({str(reason)[:200]}): {outcome}; run {run.run_id[:8]}"


def _blank_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """Missing values as empty cells (not "<NA>") in a table a person reads."""
    return frame.astype(object).where(frame.notna(), "")


def _previous_flags(instance: dg.DagsterInstance, names: ModelNames = SINGLE) -> dict[str, bool]:
    """Whether the previous model_health found batches and labels fresh (to alert once per breach)."""
    records = instance.fetch_materializations(names.key(MODEL_HEALTH), limit=1).records
    if not records or records[0].asset_materialization is None:
        return {}
    meta = records[0].asset_materialization.metadata
    return {k: bool(meta[k].value) for k in ("batch_fresh", "labels_fresh") if k in meta}


def _model_health(
    context: dg.AssetExecutionContext, names: ModelNames, settings: RetrainSettings, warehouse: Warehouse, registry: ModelRegistry,
) -> dg.MaterializeResult:
    """Is the model healthy? The verdict in one sentence, and everything behind it, on one page."""
    cfg = settings.load()
    now = datetime.now(timezone.utc)
    client = registry.client()
    champion = client.version(reg.CHAMPION_ALIAS)
    with warehouse.get_connection() as conn:
        storage.ensure_tables(conn)
        arrivals = conn.execute("SELECT batch_id, arrived_at FROM ingestion_log ORDER BY batch_id").df()
        statuses = storage.batch_statuses(conn)
        labelled = label_store.labelled_batches(conn)
        metrics = metrics_store.read_production_metrics(conn)
        drift = metrics_store.read_drift_reports(conn)
        ledger = read_ledger(conn, cfg.registered_model_name)
        state = policy_state(context.instance, conn, cfg, has_champion=champion is not None, names=names)
    awaiting = [r.to_version for r in approval.open_requests(ledger)]
    first = state.first_champion.reason if state.first_champion is not None else None
    holdout = client.tags(champion).get(reg.TAG_HOLDOUT_METRIC) if champion is not None else None
    verdict = health.health_verdict(champion=champion, metrics=metrics, drift=drift, awaiting=awaiting,
                                    no_champion_reason=first,
                                    holdout_metric=float(holdout) if holdout not in (None, "") else None)
    fresh = health.freshness(arrivals, labelled, now, max_hours_without_batch=cfg.health.max_hours_without_batch,
                             max_batches_without_labels=cfg.health.max_batches_without_labels)
    decision = policy.next_action(now, state, cfg.automation.policy())
    next_step = (f"retrain now ({decision.trigger}): {decision.reason}" if decision.retrain
                 else f"no retrain now: {decision.reason}")
    candidates = context.instance.fetch_materializations(names.key(CANDIDATE_MODEL), limit=10_000).records
    retrains = _retrains(candidates, ledger, metrics)
    by_trigger, by_period = health.retrain_costs(retrains)

    metadata: dict[str, Any] = {
        "verdict": verdict.verdict,
        "summary": verdict.sentence,
        "health": dg.MetadataValue.md(f"**{verdict.verdict.replace('_', ' ')}** — {verdict.sentence}\n\n"
                                      f"**Next:** {next_step}"),
        "champion_version": champion or "none",
        "champion_since": _champion_since(ledger, champion),
        "next_step": next_step,
        "last_retrain": _last_retrain(context.instance, candidates, names),
        "batch_freshness": fresh.batch_sentence,
        "label_freshness": fresh.labels_sentence,
        "batch_fresh": fresh.batch_fresh,
        "labels_fresh": fresh.labels_fresh,
        "awaiting_approval": dg.MetadataValue.json(awaiting),
        "automation": dg.MetadataValue.md(markdown_table(sensor_decisions(context.instance, names), width=400)),
        "retrains": len(retrains),
        "retrain_fit_seconds": round(float(retrains["fit_seconds"].sum()), 3) if not retrains.empty else 0.0,
        "retrain_costs_by_trigger": dg.MetadataValue.md(
            markdown_table(by_trigger) if not by_trigger.empty else "no retrain has trained a candidate yet"),
        "retrain_costs_by_week": dg.MetadataValue.md(
            markdown_table(by_period) if not by_period.empty else "no retrain has trained a candidate yet"),
    }
    held = held_back_batches(statuses)
    metadata["batches_held_back"] = len(held)
    metadata["held_back"] = dg.MetadataValue.md(
        markdown_table(held.tail(SHOWN_BATCHES), width=300) + f"\n\nTheir files are kept under `{cfg.rejected_dir}`; the "
        "batch_passes_validation check on validated_data has each reason with example rows."
        if not held.empty else "no batch has been held back")
    if fresh.hours_since_batch is not None:
        metadata["hours_since_last_batch"] = round(fresh.hours_since_batch, 2)
    if fresh.batches_since_labels is not None:
        metadata["batches_since_labels"] = fresh.batches_since_labels
    shown = metrics.tail(SHOWN_BATCHES)
    if not shown.empty:
        metadata["metric_per_batch"] = dg.MetadataValue.md(markdown_table(_blank_missing(shown[[
            "batch_id", "champion_version", "labelled", "batch_metric", "ci_low", "ci_high", "holdout_metric",
            "estimated_metric", "degraded", "below_floor"]].round(4))))
        latest = metrics[metrics["batch_metric"].notna()]
        if not latest.empty:
            metadata[f"latest_{cfg.metric}"] = float(latest.iloc[-1]["batch_metric"])
        if champion is not None:
            plot = report.plot_metric_history(
                metrics, pd.DataFrame(), cfg.reports_dir / "health" / "metric_per_batch.png", metric=cfg.metric,
                floor=shown["floor"].dropna().iloc[-1] if shown["floor"].notna().any() else None,
                title=f"{cfg.registered_model_name}: {cfg.metric} per batch (95% intervals; hollow: estimated)",
            )
            metadata["metric_plot"] = dg.MetadataValue.md(png_markdown(plot, f"{cfg.metric} per batch"))
    if not drift.empty:
        recent = drift.tail(SHOWN_BATCHES).copy()
        recent["drifted_features"] = recent["drifted_features"].map(lambda f: ", ".join(list(f)[:5]))
        metadata["drift_per_batch"] = dg.MetadataValue.md(markdown_table(_blank_missing(recent[[
            "batch_id", "drift_detected", "data_drift", "prediction_drift", "concept_drift", "drift_score",
            "drifted_features"]].round(4))))
        metadata["latest_drift_score"] = float(drift.iloc[-1]["drift_score"])
    if not retrains.empty:
        plot = report.plot_retrain_costs(retrains, cfg.reports_dir / "health" / "retrain_costs.png",
                                         title="retrain fit seconds per week, by trigger")
        metadata["retrain_costs_plot"] = dg.MetadataValue.md(png_markdown(plot, "retrain fit seconds per week"))

    previous = _previous_flags(context.instance, names)
    for name, ok, sentence in (("batch_fresh", fresh.batch_fresh, fresh.batch_sentence),
                               ("labels_fresh", fresh.labels_fresh, fresh.labels_sentence)):
        if not ok and previous.get(name, True):  # alert once per breach, not every hour
            send_alert(f"retrain-assets ({cfg.dataset.name}): {'no new batch' if name == 'batch_fresh' else 'no labels'}",
                       sentence, webhook_url=cfg.alerts.webhook_url, timeout_seconds=cfg.alerts.timeout_seconds,
                       logger=context.log)
    checks = [
        dg.AssetCheckResult(check_name=BATCH_FRESHNESS, passed=fresh.batch_fresh,
                            severity=dg.AssetCheckSeverity.WARN, description=fresh.batch_sentence,
                            metadata={"hours_since_last_batch": fresh.hours_since_batch if fresh.hours_since_batch
                                      is not None else -1.0, "limit_hours": cfg.health.max_hours_without_batch}),
        dg.AssetCheckResult(check_name=LABEL_FRESHNESS, passed=fresh.labels_fresh,
                            severity=dg.AssetCheckSeverity.WARN, description=fresh.labels_sentence,
                            metadata={"batches_since_labels": fresh.batches_since_labels
                                      if fresh.batches_since_labels is not None else -1,
                                      "limit_batches": cfg.health.max_batches_without_labels}),
    ]
    context.log.info(f"{verdict.verdict}: {verdict.sentence}")
    return dg.MaterializeResult(metadata=metadata, check_results=checks)


def model_health_asset(names: ModelNames = SINGLE) -> dg.AssetsDefinition:
    """The model_health asset of one model (plain key for a single config, ``<model>/model_health`` in a fleet)."""

    @dg.asset(
        key=names.key(MODEL_HEALTH),
        deps=names.keys(RAW_DATA, DRIFT_REPORT, PRODUCTION_METRICS, CANDIDATE_MODEL, PRODUCTION_MODEL),
        group_name=names.group(MONITORING),
        pool=names.duckdb_pool,  # reads the warehouse between the writers' steps, never beside one
        check_specs=[
            dg.AssetCheckSpec(BATCH_FRESHNESS, asset=names.key(MODEL_HEALTH), blocking=False,
                              description="A batch landed within health.max_hours_without_batch."),
            dg.AssetCheckSpec(LABEL_FRESHNESS, asset=names.key(MODEL_HEALTH), blocking=False,
                              description="Labels arrived within health.max_batches_without_labels batches."),
        ],
        kinds={"duckdb", "mlflow"},
        required_resource_keys=names.resources("settings", "warehouse", "registry"),
    )
    def model_health(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """Is the model healthy? The verdict in one sentence, and everything behind it, on one page."""
        return _model_health(context, names, **names.bind(context, "settings", "warehouse", "registry"))

    return model_health


model_health = model_health_asset()
