"""The platform's own columns, added to every landed row, and the one rule for what a model is given.

A leaf module (it imports nothing of the project) so that every stage can name these columns
without importing another stage.
"""

from __future__ import annotations

import pandas as pd

ROW_COLUMN = "_row"  # 1-based data row number within the landed file (CSV: line number minus one)
BATCH_COLUMN = "_batch_id"  # the batch a stored row came from
INTERNAL_COLUMNS = (BATCH_COLUMN, ROW_COLUMN)


def model_input(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    """The columns a model is given: the batch as landed, minus the target and platform columns."""
    return frame.drop(columns=[c for c in (*INTERNAL_COLUMNS, target) if c in frame.columns])
