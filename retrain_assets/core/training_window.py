"""Which batches a candidate learns from and is judged on: the training window. Pure Python.

Every labelled batch except the newest, which is the time-based holdout the promotion gates judge
the candidate on; optionally only the last N batches, or (``adapt_on``) the older part of the newest
batch too, with recency weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Mapping

import numpy as np
import pandas as pd

from retrain_assets.core.columns import BATCH_COLUMN, ROW_COLUMN
from retrain_assets.core.holdout import split_newest


MIN_LABELLED_BATCHES = 2
"""One batch to train on plus the newest one as the holdout."""


HOLDOUTS = ("last_batch",)


WINDOWS = ("all", "last_n_batches", "last_n_rows")


@dataclass(frozen=True)
class TrainingWindow:
    """Which batches a candidate learns from and which it is judged on.

    Attributes:
        train_batches: Labelled batches to fit on, in arrival order.
        holdout_batches: The newest labelled batch(es): the time-based holdout.
        window: How the training batches were chosen (``all``, ``last_n_batches``, ``last_n_rows``).
        last_n: N for the ``last_n_*`` windows.
    """

    train_batches: list[str]
    holdout_batches: list[str]
    window: str = "all"
    last_n: int | None = None
    holdout_share: float | None = None
    half_life: float | None = None

    @property
    def summary(self) -> str:
        """One sentence."""
        rows = f"; then the newest {self.last_n} rows of them" if self.window == "last_n_rows" else ""
        weights = (f"; a batch weighs half as much for every {self.half_life:g} newer batches"
                   if self.half_life is not None else "")
        if self.holdout_share is None:
            return (
                f"train on {len(self.train_batches)} batch(es) {_span(self.train_batches)}{rows}, "
                f"hold out {_span(self.holdout_batches)}{weights}"
            )
        return (
            f"train on {len(self.train_batches)} batch(es) {_span(self.train_batches)}{rows} and the oldest "
            f"{1 - self.holdout_share:.0%} of {_span(self.holdout_batches)}, hold out its newest "
            f"{self.holdout_share:.0%}{weights}"
        )

    def weights(self, train_rows: pd.DataFrame) -> np.ndarray | None:
        """One sample weight per training row, 0.5 ** (age / half_life) where age counts the window's batches newer than the row's
        (the newest batch trained on has age 0); None without a half-life.

        Raises:
            ValueError: Rows without a ``_batch_id`` or from a batch outside the window.
        """
        if self.half_life is None:
            return None
        if BATCH_COLUMN not in train_rows.columns:
            raise ValueError(f"recency weights need the {BATCH_COLUMN} column")
        order = [*self.train_batches, *(self.holdout_batches if self.holdout_share is not None else [])]
        age = {batch: len(order) - 1 - i for i, batch in enumerate(order)}
        batches = train_rows[BATCH_COLUMN].astype(str)
        outside = sorted(set(batches) - set(age))
        if outside:
            raise ValueError(f"training rows from batches outside the window: {outside[:5]}")
        return np.power(0.5, batches.map(age).to_numpy(dtype=float) / self.half_life)

    def frames(self, train_frame: pd.DataFrame, newest_frame: pd.DataFrame, *,
               time_column: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The training rows and the holdout rows, from the rows of ``train_batches`` and of
        ``holdout_batches`` as stored: applies the ``last_n_rows`` cut and, with a
        ``holdout_share``, moves the oldest part of the newest batch into training.

        Args:
            train_frame: Validated rows of ``train_batches``.
            newest_frame: Validated rows of ``holdout_batches``.
            time_column: The event-time column, if any (orders rows within a batch).

        Returns:
            (training rows, holdout rows).
        """
        if self.window == "last_n_rows":
            train_frame = last_n_rows(train_frame, self.last_n, time_column=time_column)
        if self.holdout_share is None:
            return train_frame, newest_frame
        learn, judge = split_newest(newest_frame, self.holdout_share, time_column=time_column)
        if train_frame.empty:  # a first champion from one batch: nothing older to learn from
            return learn.reset_index(drop=True), judge
        return pd.concat([train_frame, learn], ignore_index=True), judge


def _span(ids: list[str]) -> str:
    if not ids:
        return "(none)"
    return ids[0] if len(ids) == 1 else f"{ids[0]}…{ids[-1]}"


def select_training_window(
    batch_ids: list[str],
    labelled: Mapping[str, bool] | Collection[str],
    *,
    holdout: str = "last_batch",
    window: str = "all",
    last_n: int | None = None,
    holdout_share: float | None = None,
    half_life: float | None = None,
) -> TrainingWindow:
    """Split the labelled batches into training batches and a time-based holdout.

    The newest labelled batch is the holdout: the candidate is judged on data newer than anything
    it learnt from, as it will be used. Training uses every older labelled batch by default (on
    drifting data, "all labelled data so far" usually beats "newest batch only"; see FACTS), or the
    last ``last_n`` of them. ``window="last_n_rows"`` keeps all batches here; the cut happens in
    :meth:`TrainingWindow.frames` once the rows are loaded.

    With ``holdout_share``, only the newest that share of the newest batch (by event time, then
    landing order) is held out, and the candidate also learns from the rest of it: after a concept
    change the newest batch is the only one labelled under the new rule, and a candidate that never
    sees it cannot learn the change (see :func:`split_newest`). One labelled batch is then enough
    (a first champion from one large batch: ``core.first_champion.first_champion_plan``).

    Args:
        batch_ids: Batches in arrival order (oldest first).
        labelled: Batch id → whether it has labels, or the set of labelled batch ids.
        holdout: ``last_batch``.
        window: ``all``, ``last_n_batches`` or ``last_n_rows``.
        last_n: N batches (``last_n_batches``) or rows (``last_n_rows``).
        holdout_share: Share of the newest batch to hold out (0 < share < 1), the rest trained on;
            None holds out the whole batch.
        half_life: Recency weighting of the training rows (see :meth:`TrainingWindow.weights`), in
            batches; None weighs every row the same.

    Returns:
        The window.

    Raises:
        ValueError: Unknown holdout/window, a missing or non-positive ``last_n``, a share outside
            (0, 1), or fewer than two labelled batches (saying how many exist).
    """
    if holdout not in HOLDOUTS:
        raise ValueError(f"unknown holdout {holdout!r}; choose one of {HOLDOUTS}")
    if window not in WINDOWS:
        raise ValueError(f"unknown training window {window!r}; choose one of {WINDOWS}")
    if window != "all" and (last_n is None or isinstance(last_n, bool) or int(last_n) != last_n or last_n < 1):
        raise ValueError(f"window {window!r} needs last_n, a whole number >= 1 (got {last_n!r})")
    if holdout_share is not None and not 0 < holdout_share < 1:
        raise ValueError(f"holdout_share must be between 0 and 1 (exclusive), got {holdout_share!r}")
    if half_life is not None and not half_life > 0:
        raise ValueError(f"half_life must be > 0 batches, got {half_life!r}")
    if isinstance(labelled, Mapping):
        is_labelled = lambda b: bool(labelled.get(b, False))  # noqa: E731
    else:
        labelled_set = set(labelled)
        is_labelled = lambda b: b in labelled_set  # noqa: E731
    usable = [b for b in batch_ids if is_labelled(b)]
    if not usable or (len(usable) < MIN_LABELLED_BATCHES and holdout_share is None):
        raise ValueError(
            f"training needs at least {MIN_LABELLED_BATCHES} labelled batches (at least one to train on, "
            f"the newest as the holdout); {len(usable)} of {len(batch_ids)} batches are labelled"
            + (f" ({', '.join(usable)})" if usable else "")
        )
    train_batches, holdout_batches = usable[:-1], usable[-1:]
    if window == "last_n_batches":
        train_batches = train_batches[-int(last_n):]
    return TrainingWindow(train_batches, holdout_batches, window, int(last_n) if last_n is not None else None,
                          holdout_share, half_life)


def last_n_rows(frame: pd.DataFrame, n: int, *, time_column: str | None = None) -> pd.DataFrame:
    """The newest ``n`` rows of a training frame (the ``last_n_rows`` window).

    Rows are ordered by batch (``_batch_id``), then event time (when ``time_column`` is given and
    present), then landing order (``_row``) — whichever of those columns exist — with a stable
    sort, so ties keep the frame's order.

    Args:
        frame: Training rows.
        n: How many to keep (>= 1).
        time_column: The event-time column, if any.

    Returns:
        At most ``n`` rows, oldest first.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be a whole number >= 1, got {n!r}")
    keys = [c for c in (BATCH_COLUMN, time_column, ROW_COLUMN) if c is not None and c in frame.columns]
    ordered = frame.sort_values(keys, kind="mergesort") if keys else frame
    return ordered.tail(int(n))
