"""Promotion, rollback and approval against the in-memory model registry (no MLflow): the rules of
core/promotion.py and core/approval.py as production_model and the rollback/approval jobs apply
them, with a real DuckDB ledger and Dagster instance. Fast: nothing is trained. The same calls
against a real MLflow store are checked to behave alike (the fake is kept honest)."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from retrain_assets.assets.promotion import production_model
from retrain_assets.constants import PRODUCTION_MODEL
from retrain_assets.core import approval, registry as reg
from retrain_assets.core.ledger import read_ledger
from retrain_assets.core.model_registry import InMemoryRegistry, MlflowRegistry
from retrain_assets.jobs import approve_promotion_job, reject_promotion_job, rollback_job
from retrain_assets.resources import InMemoryModelRegistry, RetrainSettings, Warehouse
from retrain_assets.settings import load_settings
from retrain_assets_tests.conftest import failure_text, materialized, run_log, write_config

GATED = {reg.TAG_GATES_PASSED: "true", reg.TAG_FAILED_GATES: "", reg.TAG_GATES: "[]"}


class Deployment:
    """production_model and the person-launched jobs, wired to an in-memory registry."""

    def __init__(self, root: Path, instance: dg.DagsterInstance, **overrides):
        root.mkdir(parents=True, exist_ok=True)
        self.config_path = write_config(root, **overrides)
        self.settings = load_settings(self.config_path)
        self.store = uuid.uuid4().hex
        self.instance = instance
        self.defs = dg.Definitions(
            assets=[production_model],
            jobs=[rollback_job, approve_promotion_job, reject_promotion_job],
            resources={
                "settings": RetrainSettings(config_path=str(self.config_path)),
                "warehouse": Warehouse(database=str(self.settings.duckdb_path)),
                "registry": InMemoryModelRegistry(config_path=str(self.config_path), store=self.store),
            },
        )

    @property
    def registry(self) -> InMemoryRegistry:
        return InMemoryRegistry.named(self.store, self.settings.registered_model_name)

    def candidate(self, compared_to: str | None, gates_passed: bool = True, run_id: str | None = None) -> str:
        """A registered version judged against ``compared_to``, holding alias challenger."""
        tags = dict(GATED) if gates_passed else {reg.TAG_GATES_PASSED: "false", reg.TAG_FAILED_GATES: "metric_floor"}
        version = self.registry.register(object(), {**tags, reg.TAG_COMPARED_TO: compared_to or "none"}, run_id)
        self.registry.move_alias(reg.CHALLENGER_ALIAS, version)
        return version

    def promote(self):
        return self.defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=self.instance, asset_selection=[dg.AssetKey(PRODUCTION_MODEL)], raise_on_error=False)

    def run(self, job, op: str, **config):
        return self.defs.resolve_job_def(job.name).execute_in_process(
            instance=self.instance, run_config={"ops": {op: {"config": config}}}, raise_on_error=False)

    def ledger(self) -> pd.DataFrame:
        with Warehouse(database=str(self.settings.duckdb_path)).get_connection() as conn:
            return read_ledger(conn, self.settings.registered_model_name)

    def aliases(self) -> tuple[str | None, str | None, str | None]:
        return tuple(self.registry.version(a) for a in (reg.CHAMPION_ALIAS, reg.PREVIOUS_ALIAS, reg.CHALLENGER_ALIAS))


@pytest.fixture
def deployment(tmp_path, instance):
    d = Deployment(tmp_path / "ws", instance)
    yield d
    InMemoryRegistry.forget(d.store)


def test_a_gated_candidate_becomes_champion_with_a_settled_ledger_entry_and_tags(deployment):
    v1 = deployment.candidate(None, run_id="run-1")
    result = deployment.promote()
    assert result.success, failure_text(result)
    assert deployment.aliases() == (v1, None, v1)
    ledger = deployment.ledger()
    assert ledger[["action", "status", "from_version", "to_version"]].values.tolist() == [["promote", "done", None, v1]]
    assert deployment.registry.tags(v1)["retrain.promoted_by_run"] == result.run_id
    assert deployment.registry.run_tags["run-1"] == {"retrain.promoted": "true", "retrain.promoted_by_run": result.run_id}

    v2 = deployment.candidate(v1)
    assert deployment.promote().success
    assert deployment.aliases() == (v2, v1, v2)
    assert deployment.ledger()["status"].tolist() == ["done", "done"]


def test_a_candidate_that_failed_its_gates_or_was_judged_against_another_champion_is_refused(deployment):
    v1 = deployment.candidate(None)
    assert deployment.promote().success
    deployment.candidate(v1, gates_passed=False)
    refused = deployment.promote()  # failed gates: left as it was, the run green (nothing broke)
    assert refused.success and not materialized(refused, PRODUCTION_MODEL)
    assert "did not pass its gates (metric_floor); the champion stays v1" in run_log(deployment.instance, refused.run_id)
    v3 = deployment.candidate(None)  # judged when there was no champion
    refused = deployment.promote()
    assert not refused.success
    assert f"v{v3} was judged against no champion, but the champion is now v1" in failure_text(refused)
    assert deployment.aliases()[0] == v1 and len(deployment.ledger()) == 1


def test_rollback_restores_the_previous_champion_and_drops_its_challenger_alias(deployment):
    v1 = deployment.candidate(None)
    assert deployment.promote().success
    v2 = deployment.candidate(v1)
    assert deployment.promote().success

    never = deployment.registry.register(object(), GATED)
    refused = deployment.run(rollback_job, "rollback_champion", to_version=never)
    assert f"v{never} was never promoted (promoted versions: v1, v2)" in failure_text(refused)

    result = deployment.run(rollback_job, "rollback_champion", reason="v2 misbehaves")
    assert result.success, failure_text(result)
    assert deployment.aliases() == (v1, v2, None)  # challenger v2 dropped: production_model cannot re-promote it
    last = deployment.ledger().iloc[-1]
    assert (last["action"], last["status"], last["from_version"], last["to_version"], last["reason"]) == (
        "rollback", "done", v2, v1, "v2 misbehaves")
    refused = deployment.run(rollback_job, "rollback_champion", to_version=v1)
    assert "v1 is already the champion" in failure_text(refused)


def test_a_move_killed_between_ledger_and_alias_is_settled_aborted_by_the_next_promotion(deployment, monkeypatch):
    v1 = deployment.candidate(None)

    def registry_down(self, alias, version):
        raise ConnectionError("registry unreachable")

    monkeypatch.setattr(InMemoryRegistry, "move_alias", registry_down)
    assert not deployment.promote().success
    assert deployment.ledger()["status"].tolist() == ["pending"]
    assert deployment.aliases()[0] is None  # the champion was never touched
    monkeypatch.undo()

    result = deployment.promote()
    assert result.success, failure_text(result)
    assert deployment.ledger()["status"].tolist() == ["aborted", "done"]
    assert "stopped before moving the alias" in deployment.ledger()["note"].iloc[0]
    assert deployment.aliases()[0] == v1


def test_approval_waits_for_a_person_and_refuses_a_version_that_does_not_await(tmp_path, instance):
    d = Deployment(tmp_path / "ws", instance, **{"promotion.require_approval": True})
    try:
        v1 = d.candidate(None)
        waiting = d.promote()
        assert waiting.success, failure_text(waiting)
        assert d.aliases() == (None, None, v1)
        assert d.registry.tags(v1)["retrain.approval"] == approval.AWAITING

        wrong = d.run(approve_promotion_job, approval.APPROVE_JOB_OP, approver="alice", note="fine", version="7")
        assert f"v7 does not await approval: v{v1} does" in failure_text(wrong)
        no_note = d.run(approve_promotion_job, approval.APPROVE_JOB_OP, approver="alice", note=" ")
        assert "give both `approver`" in failure_text(no_note)

        approved = d.run(approve_promotion_job, approval.APPROVE_JOB_OP, approver="alice", note="fine", version=v1)
        assert approved.success, failure_text(approved)
        assert d.aliases()[0] == v1
        ledger = d.ledger()
        assert ledger[["action", "status"]].values.tolist() == [["approval", "approved"], ["promote", "done"]]
        assert ledger["approver"].tolist() == ["alice", "alice"]

        v2 = d.candidate(v1)
        assert d.promote().success
        rejected = d.run(reject_promotion_job, approval.REJECT_JOB_OP, approver="bob", note="worse on region x")
        assert rejected.success, failure_text(rejected)
        assert d.aliases() == (v1, None, None)
        assert d.registry.tags(v2)["retrain.rejected_by"] == "bob"
    finally:
        InMemoryRegistry.forget(d.store)


def test_the_in_memory_registry_answers_as_the_mlflow_registry_does(tmp_path):
    """The same calls on both: a fake that drifted from MLflow would make the tests above lie."""
    mlflow_store = MlflowRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}", "churn")
    client = reg.client_for(mlflow_store.tracking_uri)
    client.create_registered_model("churn")
    memory = InMemoryRegistry("churn")
    tags = [{reg.TAG_GATES_PASSED: "true", "n": 1}, {reg.TAG_GATES_PASSED: "false", reg.TAG_DATA_FINGERPRINT: "abc"}]
    for these in tags:
        client.create_model_version("churn", source=str(tmp_path / "model"),
                                    tags={k: reg.tag_text(v) for k, v in these.items()})
        memory.register(object(), these)

    def story(r) -> list:
        seen = [r.version(reg.CHAMPION_ALIAS)]
        r.move_alias(reg.CHAMPION_ALIAS, "1")
        r.move_alias(reg.CHALLENGER_ALIAS, "2")
        r.move_alias(reg.CHAMPION_ALIAS, "2")
        r.move_alias(reg.CHALLENGER_ALIAS, None)
        r.move_alias(reg.PREVIOUS_ALIAS, None)  # deleting an alias that does not exist is not an error
        r.set_tags("1", {"retrain.approval": "rejected", "list": [1, 2]})
        seen += [r.version(a) for a in (reg.CHAMPION_ALIAS, reg.CHALLENGER_ALIAS, reg.PREVIOUS_ALIAS)]
        seen += [r.tags("1"), r.tags("2"), r.uri("2"), r.uri(alias=reg.CHAMPION_ALIAS)]
        seen += [sorted((v, fp, run) for v, _, fp, run in r.lineage())]
        return seen

    assert story(memory) == story(mlflow_store)
    assert np.isfinite([t for _, t, _, _ in memory.lineage()]).all()


def test_the_ledger_in_the_ui_gives_each_reason_in_full(deployment):
    """The metadata's ledger: a table of moves, then each move's reason whole (a table column of its
    own squeezed it to a few characters beside the ten others)."""
    reason = "concept drift confirmed on batch_0007: champion roc_auc 0.767 vs 0.855 on its holdout (95% CI -0.119 to -0.057)"
    v1 = deployment.candidate(None)
    deployment.registry.set_tags(v1, {reg.TAG_TRIGGER: "concept_drift", reg.TAG_REASON: reason})
    result = deployment.promote()
    assert result.success, failure_text(result)
    ledger = next(e for e in result.get_asset_materialization_events()).materialization.metadata["ledger"].value
    table, why = ledger.split("**Why:**")
    assert table.splitlines()[0].startswith("| recorded_at | action | status | move | trigger |")
    assert f"| promote | done | none → v{v1} | concept_drift |" in table
    assert f"promote none → v{v1}: {reason}" in why
