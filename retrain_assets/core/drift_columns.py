"""One column of one side, summarised once for the drift tests: a numeric column as its sorted finite
values (with NaN/inf counts, summaries and, for a large reference, a search grid), a categorical one
as its category counts. A reference's summaries are what the drift reference cache keeps.
Pure Python (NumPy, pandas).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import pandas as pd

from retrain_assets.core.drift_grid import ReferenceGrid, reference_grid
from retrain_assets.core.drift_stats import sorted_quantiles

QUANTILES = (0.05, 0.5, 0.95)


@dataclass(frozen=True)
class SortedColumn:
    """A numeric column as the drift tests read it.

    Attributes:
        values: The finite values, sorted ascending (float64).
        missing: NaN/None count.
        infinite: ±inf count (left out of the tests, reported).
        mean: Mean of the finite values (NaN without any).
        std: Their standard deviation, ddof=1 (NaN with fewer than two).
        quantiles: Their 5/50/95% quantiles (linear interpolation).
        grid: For a large reference, the grid :func:`~retrain_assets.core.drift_grid.ks_and_wasserstein_grid`
            searches; None otherwise.
    """

    values: np.ndarray
    missing: int
    infinite: int
    mean: float
    std: float
    quantiles: tuple[float, float, float]
    grid: ReferenceGrid | None = None

    @property
    def total(self) -> int:
        """All values: finite, missing and infinite."""
        return len(self.values) + self.missing + self.infinite


@dataclass(frozen=True)
class CategoryCounts:
    """A categorical column as the drift tests read it.

    Attributes:
        counts: Rows per category (missing values left out), most frequent first, ties in
            :func:`order_counts` order; the index holds the categories as Python objects.
        total: All rows, missing ones included.
    """

    counts: pd.Series
    total: int

    @property
    def missing(self) -> int:
        """Rows without a category."""
        return self.total - int(self.counts.sum())


def numeric_values(values: Any, name: str) -> np.ndarray:
    """The values as a 1-D float64 array (NaN for missing), or a ValueError naming ``name``."""
    if isinstance(values, (pd.Series, pd.Index)):
        if not (pd.api.types.is_numeric_dtype(values.dtype) or values.dtype == object):
            raise ValueError(f"{name} must hold numbers, got dtype {values.dtype}")
        if values.dtype == np.float64:  # missing values are NaN already: no copy
            return values.to_numpy()
        try:
            arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must hold numbers only (convert with pd.to_numeric first): {exc}") from None
    else:
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must hold numbers only (convert with pd.to_numeric first): {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one feature), got shape {arr.shape}")
    return arr


def finite_sorted(values: np.ndarray, *, in_place: bool = False) -> tuple[np.ndarray, int, int]:
    """Sorted finite values, the NaN count and the ±inf count (one pass when all are finite).

    ``in_place`` sorts ``values`` itself when all are finite (for a buffer the caller owns).
    """
    finite = np.isfinite(values)
    if finite.all():
        if in_place:
            values.sort()
            return values, 0, 0
        return np.sort(values), 0, 0
    missing = int(np.isnan(values).sum())
    infinite = len(values) - int(finite.sum()) - missing
    kept = values[finite]
    kept.sort()
    return kept, missing, infinite


def sorted_column(values: Any, name: str, *, grid: bool = False, in_place: bool = False) -> SortedColumn:
    """Summarise one numeric column: sort its finite values once, count the rest.

    Args:
        values: The column (a Series or array-like of numbers).
        name: What it is, for error messages (``"reference"``, ``"current"``).
        grid: Build the search grid (for a reference; only large ones get one).
        in_place: ``values`` is a float64 array the caller owns and gives up: sort it in place.

    Returns:
        The summary.

    Raises:
        ValueError: If the values are not 1-D numbers.
    """
    arr = numeric_values(values, name)
    ordered, missing, infinite = finite_sorted(arr, in_place=in_place)
    del arr
    mean = std = np.nan
    quantiles = (np.nan, np.nan, np.nan)
    if len(ordered):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            mean = float(ordered.mean())
            std = float(ordered.std(ddof=1)) if len(ordered) > 1 else np.nan
            quantiles = tuple(float(v) for v in sorted_quantiles(ordered, QUANTILES))
    return SortedColumn(ordered, missing, infinite, mean, std, quantiles,  # type: ignore[arg-type]
                        reference_grid(ordered) if grid else None)


def as_series(values: Any, name: str) -> pd.Series:
    """The values as a Series, or a ValueError naming ``name`` if they are not 1-D."""
    if isinstance(values, pd.Series):
        return values
    arr = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one feature), got shape {arr.shape}")
    return pd.Series(arr)


def _category_key(value: Any) -> tuple[str, str]:
    return type(value).__name__, str(value)


def order_counts(counts: pd.Series) -> pd.Series:
    """Counts with the categories as Python objects, most frequent first, ties by type name and text:
    an order that does not depend on the order of the rows (or of the chunks they were read in)."""
    counts = counts[counts > 0]
    index = pd.Index([v.item() if isinstance(v, np.generic) else v for v in counts.index], dtype=object)
    values = counts.to_numpy(dtype=np.int64)
    order = sorted(range(len(values)), key=lambda i: (-values[i], _category_key(index[i])))
    return pd.Series(values[order], index=index[order], dtype=np.int64)


def counts(series: pd.Series) -> pd.Series:
    """Rows per category of a column (missing values left out), in :func:`order_counts` order."""
    return order_counts(series.value_counts(dropna=True, sort=False))


def category_counts(values: Any, name: str) -> CategoryCounts:
    """Summarise one categorical column (a Series or 1-D array of hashable values)."""
    series = as_series(values, name)
    return CategoryCounts(counts(series), len(series))


def add_category_counts(parts: Iterable[CategoryCounts]) -> CategoryCounts:
    """The counts of a column read in chunks: the chunks' counts added up."""
    parts = list(parts)
    total = sum(p.total for p in parts)
    pieces = [p.counts for p in parts if len(p.counts)]
    if not pieces:
        return CategoryCounts(pd.Series([], index=pd.Index([], dtype=object), dtype=np.int64), total)
    summed = pd.concat(pieces).groupby(level=0, sort=False).sum()
    return CategoryCounts(order_counts(summed), total)
