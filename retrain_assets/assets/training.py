"""candidate_model: a seeded scikit-learn pipeline trained on the training window, tracked and
registered in MLflow (alias ``challenger``) and judged by six gates (production_model promotes
only a version that passed them all)."""

from typing import Any

import dagster as dg
import numpy as np

from retrain_assets.checks import gate_check_result, gate_specs_for
from retrain_assets.constants import (
    CANDIDATE_MODEL,
    REPO_ROOT,
    TRAINING,
    VALIDATED_DATA,
)
from retrain_assets.core import approval, policy, registry as reg, serving
from retrain_assets.core.candidate import judge, stability_waiver
from retrain_assets.core.scoring import IncomparableModels, comparable_holdout, holdout_scores
from retrain_assets.core.columns import model_input
from retrain_assets.core.model_registry import RegistryClient
from retrain_assets.core.performance import score_metric
from retrain_assets.core.ledger import read_ledger
from retrain_assets.core.redact import redact_url
from retrain_assets.core.retrain import (
    CannotTrain,
    fit_candidate,
    gate_tags,
    lineage_tags,
    run_params,
    training_data,
)
from retrain_assets.core.registry import Champion
from retrain_assets.core.schema import SchemaStore
from retrain_assets.core.training_data import training_xy
from retrain_assets.core.training_data import check_training_data, data_fingerprint
from retrain_assets.core.markdown import markdown_table
from retrain_assets.resources import ModelRegistry, RetrainSettings, Warehouse, mlflow_run_hooks
from retrain_assets.runs import refusal, run_trigger
from retrain_assets.names import SINGLE, ModelNames

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


def _candidate_model(
    context: dg.AssetExecutionContext, names: ModelNames,
    settings: RetrainSettings,
    warehouse: Warehouse,
    registry: ModelRegistry,
    mlflow: dg.ResourceParam[Any],
) -> dg.MaterializeResult:
    """A model trained on the training window, registered in MLflow as `challenger`, judged by six gates that production_model obeys."""
    cfg = settings.load()
    target, task, metric = cfg.dataset.target, cfg.dataset.task, cfg.metric
    schema = SchemaStore(cfg.schema_path).load()
    if schema is None:
        raise refusal("no batch has been validated yet: there is no schema and no data to train on")

    trigger, reason, launched_by = run_trigger(context)
    client = registry.client()
    try:
        with warehouse.get_connection() as conn:
            data = training_data(conn, cfg, trigger=trigger, has_champion=registry.champion_version() is not None)
    except CannotTrain as error:
        raise refusal(str(error)) from None
    if data.plan:
        context.log.info(data.plan)
    if data.sampling:
        context.log.info(data.sampling)
    window, train_frame, holdout = data.window, data.train, data.holdout
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
    choice = fit_candidate(cfg, schema, window, train_frame, holdout)
    window, train_frame, trained = choice.window, choice.train_rows, choice.trained
    context.log.info(f"training window: {choice.reason}")
    X_train, y_train = training_xy(train_frame, target, task)
    context.log.info(
        f"trained {cfg.model.estimator} on {trained.n_rows} rows in {trained.seconds:.2f} s "
        f"(peak memory {trained.peak_memory_mb:.0f} MB; {window.summary})"
    )
    champion = registry.champion()
    candidate = Champion(cfg.registered_model_name, "candidate", trained.pipeline, None)
    try:
        holdout = comparable_holdout(holdout, champion, time_column=cfg.dataset.time_column)
        scores = holdout_scores(task, target, candidate, champion, holdout)
    except IncomparableModels as error:
        raise refusal(f"{error}. The champion is untouched.") from None

    holdout_labelled = holdout[holdout[target].notna()].reset_index(drop=True)
    holdout_value = score_metric(metric, scores.y_true, scores.candidate_scores)
    champion_value = score_metric(metric, scores.y_true, scores.champion_scores) if champion is not None else None
    run = mlflow.active_run()
    mlflow_run_id = run.info.run_id if run is not None else None

    # Track and register --------------------------------------------------------------------
    mlflow.log_params({**run_params(cfg, window), "window_choice": choice.name[:500],
                       "sampling": (data.sampling or "every labelled row")[:500]})
    metrics = {
        f"holdout_{metric}": holdout_value, "training_rows": trained.n_rows, "holdout_rows": len(holdout_labelled),
        "training_seconds": trained.seconds, "training_peak_memory_mb": trained.peak_memory_mb,
        "window_variants_fitted": sum(1 for v in choice.variants if v.skipped is None),
        "window_choice_seconds": choice.seconds,
    }
    for i, variant in enumerate(choice.variants):  # every variant's score with its interval, by position
        for key in ("value", "low", "high"):
            metrics[f"window_{i}_{metric}{'' if key == 'value' else '_' + key}"] = getattr(variant, key)
    if champion_value is not None:
        metrics[f"champion_holdout_{metric}"] = champion_value
    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)})
    code = reg.code_version(REPO_ROOT)
    lineage = lineage_tags(
        window, metric=metric, holdout_value=holdout_value, fingerprint=fingerprint, code_version=code,
        run_id=context.run_id, trigger=trigger, reason=reason, launched_by=launched_by,
        champion_version=champion.version if champion is not None else None, window_choice=choice.as_json(),
    )
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
    waiver = stability_waiver(trigger, data.drift_reports, champion)
    results = judge(
        cfg, schema, scores=scores, holdout=holdout_labelled, train_labels=y_train, probe=probe,
        probe_expected=expected, waiver=waiver, seed=cfg.model.seed,
    )
    failed = [r.name for r in results if not r.passed]
    verdicts = gate_tags(results)
    client.set_tags(version, verdicts)
    mlflow.set_tags({k: verdicts[k] for k in (reg.TAG_GATES_PASSED, reg.TAG_FAILED_GATES)})
    for result in results:
        mlflow.log_metric(f"gate_{result.name}", 1.0 if result.passed else 0.0)
    if failed:
        context.log.warning(f"v{version} failed gate(s) {', '.join(failed)}; production_model leaves the champion where it is")
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
        "training_window_choice": dg.MetadataValue.md(
            f"**{choice.name}** — {choice.reason}\n\n" + markdown_table(choice.rows)
        ),
        "training_batches": dg.MetadataValue.json(window.train_batches),
        "holdout_batches": dg.MetadataValue.json(window.holdout_batches),
        "training_rows": trained.n_rows,
        "holdout_rows": len(holdout_labelled),
        "sampling": data.sampling or "none: every labelled row of the window (training.max_rows)",
        "training_seconds": round(trained.seconds, 3),
        "window_choice_seconds": round(choice.seconds, 3),
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


def candidate_model_asset(names: ModelNames = SINGLE) -> dg.AssetsDefinition:
    """The candidate_model asset of one model (plain key for a single config, ``<model>/candidate_model`` in a fleet)."""

    @dg.asset(
        key=names.key(CANDIDATE_MODEL),
        deps=names.keys(VALIDATED_DATA),
        check_specs=gate_specs_for(names),
        hooks=set(mlflow_run_hooks(names)),  # marks the MLflow run FAILED when the step fails, in any job
        group_name=names.group(TRAINING),
        pool=names.retrain_pool,
        kinds={"scikit-learn", "mlflow"},
        code_version="1",
        required_resource_keys=names.resources("settings", "warehouse", "registry", "mlflow"),
    )
    def candidate_model(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """A model trained on the training window, registered in MLflow as `challenger`, judged by six gates that production_model obeys."""
        return _candidate_model(context, names, **names.bind(context, "settings", "warehouse", "registry", "mlflow"))

    return candidate_model


candidate_model = candidate_model_asset()
