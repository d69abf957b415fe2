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


def unseen_rows(model, batch_id: str, frame: pd.DataFrame, *, time_column: str | None = None
                ) -> tuple[pd.DataFrame, str | None]:
    """The rows of ``batch_id`` that ``model`` never trained on, and why any were left out.

    A model is never scored on its own training rows: its training batches give nothing, and the
    batch it held out while learning from its older part (``retrain.holdout_share``) gives only the
    newest share it was judged on. Every figure the platform reports about a model on a batch
    (drift report, production metrics, the post-promotion watch, shadow scoring) goes through this.

    Args:
        model: A registered model's tags as :class:`~retrain_assets.core.registry.Champion` exposes
            them (``training_batches``, ``holdout_batches``, ``holdout_share``, ``version``).
        batch_id: The batch being scored.
        frame: Its rows.
        time_column: The event-time column, if any (the split is by time, as in training).

    Returns:
        (the rows it may be scored on, a sentence saying what was left out, or None).
    """
    if batch_id in model.training_batches:
        return frame.iloc[0:0], (f"v{model.version} was trained on batch {batch_id}: it is not scored on its own "
                                 "training rows")
    if batch_id in model.holdout_batches and model.holdout_share is not None:
        kept = holdout_rows(frame, model.holdout_share, time_column=time_column)
        return kept, (f"v{model.version} learnt from the oldest {1 - model.holdout_share:.0%} of batch {batch_id}: "
                      f"scored on its newest {len(kept)} rows only")
    return frame, None
