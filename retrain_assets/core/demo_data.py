"""The demo's data: the batches `make demo` lands (:data:`DEMO_PLAN`) and the drifting stream the
policy backtester replays (:func:`demo_plan`, :func:`demo_batch`). Same seeds, same batches, for
both. Pure Python."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from retrain_assets.core.synthetic import TARGET, check_choice, check_int, true_churn_probability
from retrain_assets.core.synthetic_batches import MAX_ROWS, make_batch, write_batch


_DEMO_FORMATS = ("csv", "parquet")


DEMO_PLAN: list[tuple[str, str, dict]] = [
    ("batch_0001", "clean", {}),
    ("batch_0002", "clean", {}),
    ("batch_0003", "clean", {}),
    ("batch_0004", "clean", {}),
    ("batch_0005", "clean", {}),
    ("batch_0006", "corrupt", {"corrupt_fraction": 0.01}),
    ("batch_0007", "covariate_drift", {}),
    ("batch_0008", "concept_drift", {}),
    ("batch_0009", "label_noise", {}),
    ("batch_0010", "corrupt", {}),
    ("batch_0011", "unlabelled", {}),
]
"""Demo landing sequence: ``(batch_id, scenario, extra make_batch kwargs)``.

Batch ids sort in arrival order. ``batch_0006`` carries ~1 % corrupt rows (it
should pass a 5 % quarantine gate), ``batch_0010`` carries the default 12 %
(it should fail it).
"""


def _demo_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def write_demo_batches(
    landing_dir: str | os.PathLike,
    *,
    n_rows: int = 2000,
    seed: int = 7,
    fmt_cycle: Sequence[str] = ("csv", "parquet"),
) -> list[Path]:
    """Write the :data:`DEMO_PLAN` batches into a landing folder.

    Batch ``i`` (1-based, the number in its id) is generated with
    ``batch_index=i`` and its own seed derived from ``seed`` and ``i``, and
    written as ``<landing_dir>/<batch_id>.<fmt>`` where ``fmt`` cycles through
    ``fmt_cycle`` - except ``corrupt`` batches, which are always CSV so their
    mixed-type columns survive. Existing files of the same name are replaced.

    Args:
        landing_dir: Folder to write into (created if missing).
        n_rows: Rows per batch.
        seed: Base seed.
        fmt_cycle: Non-empty sequence of ``"csv"`` / ``"parquet"``.

    Returns:
        The written paths, in arrival order.

    Raises:
        ValueError: If ``fmt_cycle`` is empty or names an unknown format, or
            ``n_rows`` / ``seed`` are invalid.
    """
    n_rows = check_int("n_rows", n_rows, low=1, high=MAX_ROWS)
    seed = check_int("seed", seed, low=0)
    if isinstance(fmt_cycle, str):
        fmt_cycle = (fmt_cycle,)
    fmt_cycle = tuple(fmt_cycle)
    if not fmt_cycle:
        raise ValueError(f"fmt_cycle must name at least one format from {_DEMO_FORMATS}.")
    for fmt in fmt_cycle:
        check_choice("format in fmt_cycle", fmt, _DEMO_FORMATS)
    landing = Path(landing_dir)
    paths = []
    for pos, (batch_id, scenario, kwargs) in enumerate(DEMO_PLAN):
        index = int(batch_id.rsplit("_", 1)[1])
        df = make_batch(n_rows, seed=_demo_seed(seed, index), scenario=scenario, batch_index=index, **kwargs)
        fmt = "csv" if scenario == "corrupt" else fmt_cycle[pos % len(fmt_cycle)]
        paths.append(write_batch(df, landing / f"{batch_id}.{fmt}"))
    return paths


STREAM_BATCHES = 30
"""Length of the backtester's demo stream."""


STREAM_INITIAL = 3
"""Batches the first model of the stream learns from (noise never falls on them)."""


@dataclass(frozen=True)
class DemoBatchSpec:
    """What one demo batch carries.

    Attributes:
        batch_id: ``batch_0001``…
        covariate: Size of the covariate shift (``make_batch``'s ``drift_strength``; 0 = clean
            features): monthly charges up by about this many standard deviations, more
            month-to-month contracts, shorter tenure.
        concept: ``base`` or ``shifted`` labelling rule (:func:`true_churn_probability`:
            support calls now retain customers and price sensitivity doubles).
        label_noise: Share of labels flipped.
    """

    batch_id: str
    covariate: float = 0.0
    concept: str = "base"
    label_noise: float = 0.0

    @property
    def note(self) -> str:
        """A short description."""
        parts = []
        if self.covariate:
            parts.append(f"covariate shift {self.covariate:g}")
        if self.concept != "base":
            parts.append(f"{self.concept} concept")
        if self.label_noise:
            parts.append(f"{self.label_noise:.0%} labels flipped")
        return ", ".join(parts) or "clean"


DEMO_COVARIATE_STRENGTH = 1.0
"""The lasting covariate shift: monthly charges up by ~1 standard deviation (a price rise)."""


DEMO_BLIP_STRENGTH = 0.5
"""A one-batch covariate blip (e.g. a one-day promotion) that goes away again."""


DEMO_LABEL_NOISE = 0.2
"""Share of labels flipped in a noisy batch (a labelling outage), which goes away again."""


def demo_plan(n_batches: int = STREAM_BATCHES, *, initial: int = STREAM_INITIAL) -> list[DemoBatchSpec]:
    """The demo stream: stable, then a covariate shift that lasts, then a concept change that lasts.

    Batches ``[0, 0.3 n)`` are clean; from ``0.3 n`` the features shift for good
    (:data:`DEMO_COVARIATE_STRENGTH`); from ``2n/3`` (the last third) the labelling rule changes for
    good as well, on top of the shifted features. Transient noise that a good policy should not
    chase: one covariate blip (:data:`DEMO_BLIP_STRENGTH`) in the clean stretch and a batch with
    :data:`DEMO_LABEL_NOISE` of its labels flipped in each stretch. Noise never falls on the first
    ``initial`` batches or on the first batch of a change.

    Args:
        n_batches: Length of the stream (>= ``initial + 3``).
        initial: Batches the first model learns from.

    Returns:
        One spec per batch, in arrival order.
    """
    if n_batches < initial + 3:
        raise ValueError(f"the demo stream needs at least {initial + 3} batches (initial {initial} + 3), got {n_batches}")
    covariate_start = max(initial + 1, round(0.3 * n_batches))
    concept_start = max(covariate_start + 1, round(2 * n_batches / 3))
    protected = set(range(initial)) | {covariate_start, concept_start}
    blips = {i for i in [round(0.13 * n_batches)] if i not in protected}
    noisy = {i for i in (round(0.2 * n_batches), round(0.5 * n_batches), round(0.83 * n_batches))
             if i not in protected | blips and i < n_batches}
    plan = []
    for i in range(n_batches):
        covariate = DEMO_COVARIATE_STRENGTH if i >= covariate_start else (DEMO_BLIP_STRENGTH if i in blips else 0.0)
        plan.append(DemoBatchSpec(
            batch_id=f"batch_{i + 1:04d}",
            covariate=covariate,
            concept="shifted" if i >= concept_start else "base",
            label_noise=DEMO_LABEL_NOISE if i in noisy else 0.0,
        ))
    return plan


def stream_batch_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def demo_batch(spec: DemoBatchSpec, n_rows: int, seed: int) -> pd.DataFrame:
    """Generate one demo batch with :func:`make_batch` (its features and, for the base
    concept, its labels), relabelled with the shifted rule and/or label noise as the spec says.

    Args:
        spec: What the batch carries.
        n_rows: Rows.
        seed: Seed of this batch.

    Returns:
        The batch as it would land (ids, event time, features, ``churned``).
    """
    index = int(spec.batch_id.rsplit("_", 1)[1])
    frame = make_batch(
        n_rows, seed=seed, scenario="covariate_drift", drift_strength=spec.covariate, batch_index=index
    )
    rng = np.random.default_rng([seed, index])
    if spec.concept != "base":
        probability = true_churn_probability(frame, spec.concept)
        frame[TARGET] = (rng.random(n_rows) < probability).astype(np.int64)
    if spec.label_noise:
        flip = rng.choice(n_rows, size=int(round(spec.label_noise * n_rows)), replace=False)
        frame.iloc[flip, frame.columns.get_loc(TARGET)] = 1 - frame[TARGET].to_numpy()[flip]
    return frame
