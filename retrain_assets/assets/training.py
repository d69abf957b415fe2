"""candidate_model: a seeded scikit-learn pipeline trained on the training window, tracked and
registered in MLflow (alias ``challenger``) and judged by six blocking gates."""

import json
from typing import Any

import dagster as dg
from dagster_mlflow import end_mlflow_on_run_finished
import numpy as np

from retrain_assets.checks import gate_check_result, gate_specs
from retrain_assets.constants import (
    CANDIDATE_MODEL,
    REPO_ROOT,
    RETRAIN_POOL,
    TRAINING,
    VALIDATED_DATA,
)
from retrain_assets.core import (
    approval,
    label_store,
    metrics_store,
    policy,
    registry as reg,
    serving,
    storage,
)
from retrain_assets.core.ledger import read_ledger
from retrain_assets.core.candidate import IncomparableModels, holdout_scores, judge, stability_waiver
from retrain_assets.core.columns import model_input
from retrain_assets.core.model_registry import RegistryClient
from retrain_assets.core.performance import score_metric
from retrain_assets.core.redact import redact_url
from retrain_assets.core.registry import Champion
from retrain_assets.core.schema import SchemaStore
from retrain_assets.core.train import (
    check_training_data,
    data_fingerprint,
    select_training_window,
    train,
    training_xy,
)
from retrain_assets.metadata import markdown_table
from retrain_assets.resources import ModelRegistry, RetrainSettings, Warehouse
from retrain_assets.runs import refusal, run_trigger

FIT_MIN_ROWS = 10
"""Below this many labelled rows nothing is fitted at all (the data_sufficiency gate's own,
configurable minimum is far higher: a model on 50 rows is trained, registered and blocked there)."""

FIT_MIN_ROWS_PER_CLASS = 2
"""A class seen fewer times cannot be fitted meaningfully; fewer than the configured minimum is the gate's call."""


def _awaiting_approval(cfg, client: RegistryClient, warehouse: Warehouse) -> str | None:
    """The challenger version awaiting a person's approval (promotion.require_approval), if any."""
    if not cfg.promotion.require_approval:
        return None
    challenger = client.version(reg.CHALLENGER_ALIAS)
    if challenger is None:
        return None
    with warehouse.get_connection() as conn:
        ledger = read_ledger(conn, client.model_name)
    waiting = {r.to_version for r in approval.open_requests(ledger)}
    return challenger if challenger in waiting else None


@dg.asset(
    key=CANDIDATE_MODEL,
    deps=[VALIDATED_DATA],
    check_specs=gate_specs,
    hooks={end_mlflow_on_run_finished},  # marks the MLflow run FAILED when the step fails, in any job
    group_name=TRAINING,
    pool=RETRAIN_POOL,
    kinds={"scikit-learn", "mlflow"},
    code_version="1",
)
def candidate_model(
    context: dg.AssetExecutionContext,
    settings: RetrainSettings,
    warehouse: Warehouse,
    registry: ModelRegistry,
    mlflow: dg.ResourceParam[Any],
) -> dg.MaterializeResult:
    """A model trained on the training window, registered in MLflow as `challenger`, judged by six blocking gates."""
    cfg = settings.load()
    target, task, metric = cfg.dataset.target, cfg.dataset.task, cfg.metric
    schema = SchemaStore(cfg.schema_path).load()
    if schema is None:
        raise refusal("no batch has been validated yet: there is no schema and no data to train on")

    trigger, reason, launched_by = run_trigger(context)
    client = registry.client()
    with warehouse.get_connection() as conn:
        labelled = label_store.labelled_batches(conn)
        adaptation = cfg.training.adaptation(trigger)
        if registry.champion_version() is None:
            # The first champion, as soon as the labelled data allows: the drift sensor's own rule.
            plan = cfg.training.first_champion_plan(label_store.labelled_row_counts(conn, cfg.dataset.target))
            if not plan.ready and sum(labelled.values()) < 2:
                raise refusal(f"cannot train: {plan.reason}. The champion is untouched.")
            if plan.ready:
                adaptation = {"holdout_share": plan.holdout_share, "half_life": None}
                context.log.info(plan.reason)
        try:
            window = select_training_window(
                list(labelled), labelled, window=cfg.training.window, last_n=cfg.training.last_n, **adaptation,
            )
        except ValueError as error:
            raise refusal(f"cannot train: {error}") from None
        train_frame, holdout = window.frames(
            storage.read_validated(conn, window.train_batches), storage.read_validated(conn, window.holdout_batches),
            time_column=cfg.dataset.time_column,
        )
        drift_reports = metrics_store.read_drift_reports(conn)
    context.log.info(window.summary)

    fingerprint = data_fingerprint(train_frame)
    requested = context.instance.get_run_record_by_id(context.run_id)
    earlier = policy.already_trained(
        requested.create_timestamp.timestamp() if requested is not None else 0.0, fingerprint,
        client.lineage(), context.run_id,
    )
    if earlier is not None:
        raise refusal(
            f"another retrain already registered v{earlier} from exactly this training data after this run was "
            f"requested (retrains launched at once run one after the other); nothing new to learn, so this run "
            f"neither trains nor promotes. The champion is untouched.",
            same_data_as_version=earlier,
        )

    problems = check_training_data(
        train_frame, schema, target, task, min_rows=FIT_MIN_ROWS, min_rows_per_class=FIT_MIN_ROWS_PER_CLASS
    )
    if problems:
        raise refusal(
            f"cannot train on batches {', '.join(window.train_batches)}: " + "; ".join(problems)
            + ". The champion is untouched.",
            training_batches=dg.MetadataValue.json(window.train_batches),
        )
    X_train, y_train = training_xy(train_frame, target, task)

    trained = train(
        train_frame, schema, target, task, cfg.model.estimator, cfg.model.params, cfg.model.seed,
        sample_weight=window.weights(train_frame),
    )
    context.log.info(
        f"trained {cfg.model.estimator} on {trained.n_rows} rows in {trained.seconds:.2f} s "
        f"(peak memory {trained.peak_memory_mb:.0f} MB)"
    )
    champion = registry.champion()
    candidate = Champion(cfg.registered_model_name, "candidate", trained.pipeline, None)
    try:
        scores = holdout_scores(task, target, candidate, champion, holdout)
    except IncomparableModels as error:
        raise refusal(f"{error}. The champion is untouched.") from None

    holdout_labelled = holdout[holdout[target].notna()].reset_index(drop=True)
    holdout_value = score_metric(metric, scores.y_true, scores.candidate_scores)
    champion_value = score_metric(metric, scores.y_true, scores.champion_scores) if champion is not None else None
    run = mlflow.active_run()
    mlflow_run_id = run.info.run_id if run is not None else None

    # Track and register --------------------------------------------------------------------
    params = {
        "estimator": cfg.model.estimator, "seed": cfg.model.seed, "task": task, "target": target, "metric": metric,
        "training_window": window.window, "training_last_n": window.last_n,
        "holdout_share": window.holdout_share if window.holdout_share is not None else 1.0,
        "recency_half_life_batches": window.half_life,
        **{f"model.{k}": v for k, v in cfg.model.params.items()},
    }
    mlflow.log_params({k: ("none" if v is None else v) for k, v in params.items()})
    metrics = {
        f"holdout_{metric}": holdout_value, "training_rows": trained.n_rows, "holdout_rows": len(holdout_labelled),
        "training_seconds": trained.seconds, "training_peak_memory_mb": trained.peak_memory_mb,
    }
    if champion_value is not None:
        metrics[f"champion_holdout_{metric}"] = champion_value
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)})
    code = reg.code_version(REPO_ROOT)
    lineage = {
        reg.TAG_TRAINING_BATCHES: json.dumps(window.train_batches),
        reg.TAG_HOLDOUT_BATCHES: json.dumps(window.holdout_batches),
        reg.TAG_METRIC: metric,
        reg.TAG_HOLDOUT_METRIC: repr(holdout_value),
        **({reg.TAG_HOLDOUT_SHARE: repr(window.holdout_share)} if window.holdout_share is not None else {}),
        reg.TAG_DATA_FINGERPRINT: fingerprint,
        reg.TAG_CODE_VERSION: code,
        reg.TAG_DAGSTER_RUN: context.run_id,
        reg.TAG_TRIGGER: trigger,
        reg.TAG_REASON: reason,
        reg.TAG_COMPARED_TO: champion.version if champion is not None else "none",
        "retrain.launched_by": launched_by,
    }
    mlflow.set_tags(lineage)
    example = model_input(holdout_labelled.head(5), target)
    version, version_uri = client.log_candidate(
        trained.pipeline, signature=reg.serving_signature(schema, target, task), input_example=example, tags=lineage,
    )
    context.log.info(f"registered {version_uri}")

    # Judge ---------------------------------------------------------------------------------
    sample = serving.latency_sample(model_input(holdout_labelled, target), 1000)
    probe = serving.smoke_test(version_uri, sample, tracking_uri=cfg.mlflow_tracking_uri)
    expected = trained.pipeline.predict(sample)
    waiver = stability_waiver(trigger, drift_reports, champion)
    results = judge(
        cfg, schema, scores=scores, holdout=holdout_labelled, train_labels=y_train, probe=probe,
        probe_expected=expected, waiver=waiver, seed=cfg.model.seed,
    )
    failed = [r.name for r in results if not r.passed]
    client.set_tags(
        version,
        {
            reg.TAG_GATES_PASSED: "false" if failed else "true",
            reg.TAG_FAILED_GATES: ",".join(failed),
            reg.TAG_GATES: json.dumps([
                {"gate": r.name, "passed": bool(r.passed), "waived": bool(r.waived), "summary": r.summary[:400]}
                for r in results
            ]),
        },
    )
    mlflow.set_tags({reg.TAG_GATES_PASSED: "false" if failed else "true", reg.TAG_FAILED_GATES: ",".join(failed)})
    for result in results:
        mlflow.log_metric(f"gate_{result.name}", 1.0 if result.passed else 0.0)
    if failed:
        context.log.warning(f"v{version} failed gate(s) {', '.join(failed)}; production_model will not run")
    else:
        context.log.info(f"v{version} passed every gate")
    # The alias moves once judged: a candidate that failed must not displace one awaiting a person's approval.
    awaiting = _awaiting_approval(cfg, client, warehouse) if failed else None
    if awaiting is not None:
        context.log.warning(f"alias {reg.CHALLENGER_ALIAS} stays on v{awaiting}, which awaits approval; "
                            f"v{version} failed its gates and is not put up")
    else:
        client.move_alias(reg.CHALLENGER_ALIAS, version)
        context.log.info(f"v{version} now holds alias {reg.CHALLENGER_ALIAS}")
    # The MLflow run is this training run: close it here, whichever job (or the UI) launched the step.
    mlflow.end_run()

    gate_rows = [{"gate": r.name, "passed": r.passed, "waived": r.waived, "summary": r.summary} for r in results]
    metadata = {
        "version": version,
        "model_uri": version_uri,
        "registered_model": cfg.registered_model_name,
        "alias": reg.CHALLENGER_ALIAS if awaiting is None else f"none ({reg.CHALLENGER_ALIAS} stays on v{awaiting}, awaiting approval)",
        "gates_passed": not failed,
        "failed_gates": dg.MetadataValue.json(failed),
        "gates": dg.MetadataValue.md(markdown_table(gate_rows)),
        f"holdout_{metric}": holdout_value,
        f"champion_holdout_{metric}": champion_value if champion_value is not None else "no champion yet",
        "champion_version": champion.version if champion is not None else "none yet",
        "estimator": cfg.model.estimator,
        "training_window": window.summary,
        "training_batches": dg.MetadataValue.json(window.train_batches),
        "holdout_batches": dg.MetadataValue.json(window.holdout_batches),
        "training_rows": trained.n_rows,
        "holdout_rows": len(holdout_labelled),
        "training_seconds": round(trained.seconds, 3),
        "training_peak_memory_mb": round(trained.peak_memory_mb, 1),
        "data_fingerprint": fingerprint,
        "code_version": code,
        "trigger": trigger,
        "reason": reason,
        "launched_by": launched_by,
        "mlflow_run_id": mlflow_run_id or "none",
        "mlflow_tracking_uri": redact_url(cfg.mlflow_tracking_uri),
    }
    if cfg.mlflow_tracking_uri.startswith("http"):
        metadata["mlflow_model_page"] = dg.MetadataValue.url(
            f"{redact_url(cfg.mlflow_tracking_uri).rstrip('/')}/#/models/{cfg.registered_model_name}/versions/{version}"
        )
    return dg.MaterializeResult(metadata=metadata, check_results=[gate_check_result(r) for r in results])
