"""What a person sees in the Dagster UI before anything runs: every asset in one of the five stage
groups with its kinds (the icons on the graph), and a description on every asset, check, sensor,
schedule and job (the text under its name)."""

from __future__ import annotations

import dagster as dg
import pytest

from retrain_assets.constants import INGESTION, MONITORING, SERVING, TRAINING, VALIDATION

GROUPS = {INGESTION, VALIDATION, MONITORING, TRAINING, SERVING}
KINDS = {"duckdb", "mlflow", "scikit-learn", "great_expectations"}
"""The tools the platform is built on, shown as kind tags on the asset graph."""

# Resolving Definitions reads the "current" instance's defs-state storage: give every test a live one.
pytestmark = pytest.mark.usefixtures("instance")


def _assets(defs: dg.Definitions) -> dict:
    """Asset nodes (group, kinds, description, checks) by asset key."""
    graph = defs.resolve_asset_graph()
    return {key.to_user_string(): graph.get(key) for key in graph.get_all_asset_keys()}


def test_every_asset_is_in_a_stage_group_with_kinds_and_a_description(defs):
    problems = []
    for name, node in _assets(defs).items():
        if node.group_name not in GROUPS:
            problems.append(f"{name}: group {node.group_name!r} is not one of {sorted(GROUPS)}")
        if not node.kinds:
            problems.append(f"{name}: no kinds")
        if not (node.description or "").strip():
            problems.append(f"{name}: no description")
    assert not problems, "\n".join(problems)


def test_every_stage_group_holds_an_asset_and_the_platform_kinds_all_show(defs):
    assets = _assets(defs).values()
    assert {node.group_name for node in assets} == GROUPS
    shown = set().union(*(node.kinds for node in assets))
    assert KINDS <= shown, f"kinds missing from the asset graph: {sorted(KINDS - shown)}"


def test_every_check_sensor_schedule_and_job_has_a_description(defs):
    graph = defs.resolve_asset_graph()
    described = {}
    for key in graph.get_all_asset_keys():
        for check_key in graph.get(key).check_keys:
            described[f"check {check_key.to_user_string()}"] = graph.get(check_key).description
    described.update({f"sensor {s.name}": s.description for s in defs.sensors or []})
    described.update({f"schedule {s.name}": s.description for s in defs.schedules or []})
    described.update({
        f"job {j.name}": j.description
        for j in defs.resolve_all_job_defs()
        if not j.name.startswith("__")  # Dagster's implicit asset job (the UI's "Materialize")
    })
    assert any(name.startswith("check ") for name in described) and any(name.startswith("schedule ") for name in described)
    missing = sorted(name for name, text in described.items() if not (text or "").strip())
    assert not missing, f"no description: {missing}"
