"""Which rows of a model's holdout batch it was judged on.

A retrain normally holds out the whole newest labelled batch. A retrain that also learns from that
batch (``training.adapt_on``, e.g. after a concept change) holds out only its newest share
and trains on the rest; the share is tagged on the registered version (``retrain.holdout_share``)
so monitoring can rebuild exactly the rows the model never saw.
"""

from __future__ import annotations

import pandas as pd

from retrain_assets.core.columns import BATCH_COLUMN, ROW_COLUMN


def holdout_rows(frame: pd.DataFrame, holdout_share: float | None, *,
                 time_column: str | None = None) -> pd.DataFrame:
    """The rows of a model's holdout batch(es) it was judged on: all of them, or with a
    ``holdout_share`` (tag ``retrain.holdout_share``) the newest share it did not learn from."""
    if holdout_share is None:
        return frame
    return split_newest(frame, holdout_share, time_column=time_column)[1]


def split_newest(frame: pd.DataFrame, holdout_share: float, *,
                 time_column: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a batch in time: its oldest rows to learn from, its newest ``holdout_share`` to judge on.

    Rows are ordered by batch, event time (when ``time_column`` is present), then landing order
    (``_row``), with a stable sort; the holdout keeps at least one row, and so does the rest when
    the batch has two or more rows. The same frame and share always give the same split, so the
    champion's holdout can be rebuilt later from its tags.

    Args:
        frame: The newest labelled batch's rows.
        holdout_share: Share of rows to hold out, 0 < share < 1.
        time_column: The event-time column, if any.

    Returns:
        (rows to learn from, holdout rows), each in time order.
    """
    if not 0 < holdout_share < 1:
        raise ValueError(f"holdout_share must be between 0 and 1 (exclusive), got {holdout_share!r}")
    keys = [c for c in (BATCH_COLUMN, time_column, ROW_COLUMN) if c is not None and c in frame.columns]
    ordered = frame.sort_values(keys, kind="mergesort") if keys else frame
    n = len(ordered)
    held = min(n, max(1, int(round(n * holdout_share)))) if n else 0
    if n >= 2:
        held = min(held, n - 1)
    return ordered.iloc[: n - held], ordered.iloc[n - held:]
