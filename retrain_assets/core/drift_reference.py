"""A drift reference prepared once for many batches: each numeric column sorted (with its search
grid), each categorical column counted, and a seeded sample of rows for the domain classifier.
Pure Python (NumPy, pandas).

The reference of a batch (the champion's training batches, or the first batches) stays the same
for many batches, but sorting it is half of a drift check's work (more with the merge it replaces).
:func:`prepare_reference` does that work once; :func:`~retrain_assets.core.drift.detect_drift`
takes the result in place of the reference frame, and
:mod:`~retrain_assets.core.drift_cache` keeps it on disk between runs. A check against a prepared
reference gives exactly the result of the same check against the frame it was prepared from.

The domain-classifier sample is drawn so that it does not depend on the current batch: the
reference rows are a seeded random *order* of ``min(rows, domain_max_rows)`` positions, and a
check that needs k rows takes the first k of them (a uniform sample of k rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from retrain_assets.core.drift_columns import CategoryCounts, SortedColumn, category_counts, sorted_column
from retrain_assets.core.drift_settings import DriftSettings

_REFERENCE_STREAM, _CURRENT_STREAM = 0, 1


@dataclass(frozen=True)
class DomainSample:
    """Reference rows drawn for the domain classifier, in draw order.

    Attributes:
        positions: Each row's position in the reference (in row order), in draw order.
        frame: The rows (numeric and categorical columns; categories as plain Python values),
            in draw order, index ``0..len-1``.
    """

    positions: np.ndarray
    frame: pd.DataFrame

    def first(self, k: int) -> pd.DataFrame:
        """The first ``k`` drawn rows (a uniform sample of k reference rows), in reference row order."""
        if k > len(self.positions):
            raise ValueError(f"the sample holds {len(self.positions)} rows, {k} were asked for")
        order = np.argsort(self.positions[:k], kind="stable")
        return self.frame.iloc[order].reset_index(drop=True)


@dataclass(frozen=True)
class PreparedReference:
    """A reference summarised for drift checks (see the module docstring).

    Attributes:
        numeric: Sorted finite values and summaries per numeric column (may load from disk on access).
        categorical: Category counts per categorical column.
        sample: Rows for the domain classifier.
        n_rows: Rows in the reference.
        seed: ``DriftSettings.seed`` the sample was drawn with.
        sample_rows: ``DriftSettings.domain_max_rows`` it was drawn for.
        key: What identifies the reference it was prepared from (the cache key), if known.
    """

    numeric: Mapping[str, SortedColumn]
    categorical: Mapping[str, CategoryCounts]
    sample: DomainSample
    n_rows: int
    seed: int
    sample_rows: int
    key: str | None = None

    def check_settings(self, settings: DriftSettings) -> None:
        """Raise a ValueError unless the sample was drawn with these settings' seed and size."""
        if (self.seed, self.sample_rows) != (settings.seed, settings.domain_max_rows):
            raise ValueError(
                f"the reference was prepared with seed={self.seed}, domain_max_rows={self.sample_rows}, but the "
                f"settings say seed={settings.seed}, domain_max_rows={settings.domain_max_rows}: prepare it again "
                f"with these settings (prepare_reference(..., settings=...))"
            )


def reference_sample_positions(n_rows: int, settings: DriftSettings) -> np.ndarray:
    """Positions of the reference rows drawn for the domain classifier, in draw order (seeded)."""
    rng = np.random.default_rng([settings.seed, _REFERENCE_STREAM])
    return rng.choice(n_rows, min(n_rows, settings.domain_max_rows), replace=False).astype(np.int64)


def current_sample_positions(n_rows: int, k: int, settings: DriftSettings) -> np.ndarray:
    """Positions of ``k`` current rows for the domain classifier, ascending (seeded; all rows if k ≥ n)."""
    if k >= n_rows:
        return np.arange(n_rows, dtype=np.int64)
    rng = np.random.default_rng([settings.seed, _CURRENT_STREAM])
    return np.sort(rng.choice(n_rows, k, replace=False)).astype(np.int64)


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def sample_frame(rows: pd.DataFrame, numeric: Sequence, categorical: Sequence) -> pd.DataFrame:
    """Sampled rows as the domain classifier reads them: numbers as float64 (NaN for missing),
    categories as plain Python values (None for missing), index ``0..len-1``."""
    out = {col: rows[col].to_numpy(dtype=np.float64, na_value=np.nan) for col in numeric}
    for col in categorical:
        out[col] = np.array([_plain(v) for v in rows[col].tolist()], dtype=object)
    return pd.DataFrame(out, columns=list(numeric) + list(categorical))


class _SortedOnAccess(Mapping):
    """A frame's numeric columns, each sorted when read and not kept (one column in memory at a time)."""

    def __init__(self, frame: pd.DataFrame, columns: Sequence) -> None:
        self.frame, self.columns = frame, list(columns)

    def __getitem__(self, column: str) -> SortedColumn:
        if column not in self.columns:
            raise KeyError(column)
        return sorted_column(self.frame[column], "reference", grid=True)

    def __iter__(self) -> Iterator[str]:
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)


def prepare_reference(reference: pd.DataFrame, numeric: Sequence, categorical: Sequence,
                      settings: DriftSettings | None = None, *, key: str | None = None,
                      keep_sorted: bool = True) -> PreparedReference:
    """Summarise a reference frame once for many drift checks.

    Args:
        reference: The reference rows.
        numeric: Its columns compared as numbers.
        categorical: Its columns compared as categories.
        settings: The drift settings (their seed and ``domain_max_rows`` shape the sample).
        key: What identifies this reference, if known (kept with it).
        keep_sorted: Sort every numeric column now and keep it (for many checks); False sorts a
            column each time it is read and keeps only the frame (one check, least memory).

    Returns:
        The prepared reference.

    Raises:
        ValueError: If a numeric column does not hold numbers.
    """
    settings = settings or DriftSettings()
    positions = reference_sample_positions(len(reference), settings)
    rows = reference.iloc[positions] if len(positions) else reference.iloc[0:0]
    return PreparedReference(
        numeric=({col: sorted_column(reference[col], "reference", grid=True) for col in numeric} if keep_sorted
                 else _SortedOnAccess(reference, numeric)),
        categorical={col: category_counts(reference[col], "reference") for col in categorical},
        sample=DomainSample(positions, sample_frame(rows, numeric, categorical)),
        n_rows=len(reference),
        seed=int(settings.seed),
        sample_rows=int(settings.domain_max_rows),
        key=key,
    )
