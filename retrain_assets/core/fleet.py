"""A fleet of models in one deployment: the fleet-wide retrain controls, as pure rules.

* **Order of need.** When several models ask for a retrain at once, their runs queue by
  :func:`need_priority` (Dagster's ``dagster/priority`` run tag orders both the run queue and the
  steps waiting for the shared ``retrain`` pool): concept drift first, a bare schedule last.
* **Budget.** An optional cap on retrains started across the whole fleet in a sliding period
  (:func:`budget_spent`); a model over budget waits and asks again at its sensor's next tick.

The fleet's own config is ``_fleet.yaml`` beside the models' files (:func:`load_fleet_file`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Sequence

import yaml

NEED_ORDER = ("concept_drift", "performance_decline", "bootstrap", "business_change", "data_drift", "manual",
              "schedule")
"""Retrain triggers from most to least urgent: a champion known to be wrong (concept drift, a metric
decline) before a model that has none yet, a person's business change, drift the model may absorb,
and the safety-net schedule."""

FLEET_FILE = "_fleet.yaml"
"""The fleet's settings, beside the models' files; files whose name starts with ``_`` are not models."""

FLEET_KEYS = {"retrain_budget", "budget_period_hours"}

MODEL_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
"""A model's name (its config file's name without ``.yaml``): it becomes a key prefix and part of
Dagster names, which allow letters, digits and underscores; ``__`` is the separator."""


def check_model_name(name: str) -> str:
    """``name`` if it can name a model, else ValueError saying what is allowed."""
    if not MODEL_NAME.match(name) or "__" in name:
        raise ValueError(
            f"{name!r} cannot name a model: use lower-case letters, digits and single underscores, starting with a "
            "letter, at most 40 characters (the file name without .yaml becomes the model's key prefix)"
        )
    return name


def need_priority(trigger: str | None) -> int:
    """The Dagster run priority of a retrain (higher runs first): its place in :data:`NEED_ORDER`
    (concept drift 7 … schedule 1); 0 for a trigger not in it."""
    if trigger not in NEED_ORDER:
        return 0
    return len(NEED_ORDER) - NEED_ORDER.index(trigger)


@dataclass(frozen=True)
class FleetSettings:
    """The models of one deployment and the controls they share.

    Attributes:
        models: The models' names (their files' names without ``.yaml``), in file order.
        retrain_budget: At most this many retrains started across the fleet per period; None for no cap.
        budget_period_hours: The sliding period of the budget.
    """

    models: tuple[str, ...]
    retrain_budget: int | None = None
    budget_period_hours: float = 24.0

    def __post_init__(self) -> None:
        if self.retrain_budget is not None and (isinstance(self.retrain_budget, bool) or not isinstance(
                self.retrain_budget, int) or self.retrain_budget < 1):
            raise ValueError(f"retrain_budget must be a whole number ≥ 1 (or absent), got {self.retrain_budget!r}")
        if isinstance(self.budget_period_hours, bool) or not isinstance(self.budget_period_hours, (int, float)) or not (
                0 < self.budget_period_hours <= 24 * 366):
            raise ValueError(f"budget_period_hours must be a number of hours in (0, 8784], got {self.budget_period_hours!r}")


def load_fleet_file(folder: Path, models: Sequence[str]) -> FleetSettings:
    """The fleet's settings from ``folder/_fleet.yaml`` (optional: without it, no budget).

    Raises:
        ValueError: the file is not a mapping of the known keys, or a value is out of range; the
            message names the file and the key.
    """
    path = Path(folder) / FLEET_FILE
    if not path.is_file():
        return FleetSettings(tuple(models))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with {sorted(FLEET_KEYS)}, got {type(raw).__name__}")
    unknown = set(raw) - FLEET_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}; the fleet file takes {sorted(FLEET_KEYS)}")
    try:
        return FleetSettings(tuple(models), raw.get("retrain_budget"), raw.get("budget_period_hours", 24.0))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def budget_spent(started: Sequence[datetime], now: datetime, fleet: FleetSettings) -> str | None:
    """Why the fleet may not start another retrain now, or None when it may.

    Args:
        started: When each retrain of any model of the fleet started (any outcome; a queued one counts).
        now: The time of the decision (timezone-aware, like ``started``).
        fleet: The budget.
    """
    if fleet.retrain_budget is None:
        return None
    period = timedelta(hours=fleet.budget_period_hours)
    recent = sorted(t for t in started if now - period < t <= now)
    if len(recent) < fleet.retrain_budget:
        return None
    frees = recent[len(recent) - fleet.retrain_budget] + period
    return (f"the fleet's retrain budget is spent: {len(recent)} retrains across {len(fleet.models)} models in the "
            f"last {fleet.budget_period_hours:g} h (retrain_budget {fleet.retrain_budget}, {FLEET_FILE}); the next "
            f"slot frees at {frees:%Y-%m-%d %H:%M} UTC")
