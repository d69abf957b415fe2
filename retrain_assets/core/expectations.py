"""Expectations learnt from the reference batch: what a column's values plausibly look like.

A user declares ranges and categories when they know them (``schema.ranges``, ``schema.categories``);
for everything else the first accepted batch (the one the schema is inferred from) sets the
expectations below, recorded under each column's ``observed`` in ``schema.json`` (readable, editable):

* numeric: the 0.5 % and 99.5 % quantiles; a value further than ``margin`` × their spread outside
  them is implausible (1e308, a unit change ×1e12, -500 months). Quantiles, not min/max, so one
  outlier in the reference does not widen the range; the margin (default 3) keeps real drift —
  a shift of several standard deviations — inside it.
* numeric and categorical: whether the column varied; a batch where a column that varied holds one
  value in every row is a broken feed, not data to train on.
* datetime: how dates were written (ISO, day-first or month-first) and the span they covered; a
  batch in another order, an event time in the future (beyond a tolerance) or long before the
  reference began is refused.

Pure Python (pandas), no Dagster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

LOW_QUANTILE, HIGH_QUANTILE = 0.005, 0.995
MIN_ROWS_FOR_CONSTANT = 20  # fewer non-null values than this can be one value by chance
DATE_SAMPLE = 2000
DATE_FORMATS = {"iso": "YYYY-MM-DD", "day_first": "DD/MM/YYYY", "month_first": "MM/DD/YYYY",
                "slash_ambiguous": "NN/NN/YYYY"}
_ISO = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}([ T]|$)")
_SLASHED = re.compile(r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{2,4})([ T]|$)")


def learn_numeric(values: pd.Series) -> dict[str, Any]:
    """Quantiles and spread of a parsed numeric column (finite values only)."""
    finite = values[np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))]
    if finite.empty:
        return {}
    return {
        "q005": float(finite.quantile(LOW_QUANTILE)),
        "q995": float(finite.quantile(HIGH_QUANTILE)),
        "std": float(finite.std(ddof=0)),
    }


def plausible_range(observed: dict[str, Any], margin: float) -> tuple[float, float] | None:
    """The learnt plausible range of a numeric column, or None when nothing was learnt."""
    if "q005" not in observed:
        return None
    low, high = float(observed["q005"]), float(observed["q995"])
    spread = high - low
    if spread <= 0:  # a constant reference: allow the same order of magnitude around it
        spread = max(abs(high), 1.0)
    return low - margin * spread, high + margin * spread


def varied(observed: dict[str, Any]) -> bool:
    """Whether the column varied in the reference (a constant batch then means a broken feed)."""
    if "std" in observed:
        return float(observed["std"]) > 0
    return len(observed.get("categories") or []) > 1


@dataclass(frozen=True)
class ConstantSummary:
    """Whether a column holds one value in every row, summed up so that chunks of a batch can be merged.

    Attributes:
        present: Non-null values seen.
        first: The first of them (None when there are none).
        same: Whether every one equals ``first``.
    """

    present: int
    first: Any = None
    same: bool = True

    @classmethod
    def of(cls, series: pd.Series) -> ConstantSummary:
        """The summary of one column (or one chunk of it)."""
        present = series.dropna()
        if present.empty:
            return cls(0)
        first = present.iloc[0]
        return cls(len(present), first, bool((present == first).all()))

    def merge(self, later: ConstantSummary) -> ConstantSummary:
        """The summary of this chunk followed by ``later``."""
        if not later.present:
            return self
        if not self.present:
            return later
        return ConstantSummary(self.present + later.present, self.first,
                               self.same and later.same and bool(later.first == self.first))

    def value(self) -> Any | None:
        """The one value held in every row, when there are enough rows to say so; else None."""
        return self.first if self.present >= MIN_ROWS_FOR_CONSTANT and self.same else None


def constant_value(series: pd.Series) -> Any | None:
    """The one value a column holds in every row, when it has enough rows to say so; else None."""
    return ConstantSummary.of(series).value()


def date_format(text: pd.Series) -> str | None:
    """How dates in a text column are written: iso, day_first, month_first or slash_ambiguous (None:
    not text, or no recognisable date)."""
    if pd.api.types.is_datetime64_any_dtype(text):
        return None
    values = [v.strip() for v in text.dropna().head(DATE_SAMPLE) if isinstance(v, str) and v.strip()]
    if not values:
        return None
    if sum(bool(_ISO.match(v)) for v in values) >= 0.95 * len(values):
        return "iso"
    parts = [m.groups() for m in map(_SLASHED.match, values) if m]
    if len(parts) < 0.95 * len(values):
        return None
    if any(int(a) > 12 for a, _, _, _ in parts):
        return "day_first"
    if any(int(b) > 12 for _, b, _, _ in parts):
        return "month_first"
    return "slash_ambiguous"


def format_conflict(reference: str | None, batch: str | None) -> bool:
    """Whether a batch writes dates differently from the reference (same dates would parse otherwise)."""
    if reference is None or batch is None or reference == batch:
        return False
    slashed = {"day_first", "month_first", "slash_ambiguous"}
    if reference in slashed and batch in slashed:  # an ambiguous side fits either order
        return "slash_ambiguous" not in (reference, batch)
    return True


def learn_datetime(text: pd.Series, parsed: pd.Series) -> dict[str, Any]:
    """Format and span of the reference's event times."""
    out: dict[str, Any] = {"date_format": date_format(text)}
    present = parsed.dropna()
    if not present.empty:
        out.update(earliest=present.min().isoformat(), latest=present.max().isoformat())
    return out


def earliest_plausible(observed: dict[str, Any]) -> pd.Timestamp | None:
    """Event times before this are implausible: the reference's start minus ten times its span
    (at least a year), so back-filled history passes and 1899 does not."""
    if "earliest" not in observed:
        return None
    earliest, latest = pd.Timestamp(observed["earliest"]), pd.Timestamp(observed["latest"])
    return earliest - max(10 * (latest - earliest), pd.Timedelta(days=365))


def latest_plausible(now: datetime, tolerance_hours: float) -> pd.Timestamp:
    """Event times after this are in the future (``now`` in UTC, naive, plus the tolerance)."""
    return pd.Timestamp(now.replace(tzinfo=None)) + pd.Timedelta(timedelta(hours=tolerance_hours))


def parse_times(series: pd.Series, reference_format: str | None = None) -> pd.Series:
    """Event times as naive UTC timestamps (NaT where a value does not parse), reading slashed dates
    in the reference's order (day-first when the reference was written day-first)."""
    if pd.api.types.is_datetime64_any_dtype(series):
        parsed = pd.to_datetime(series, utc=True)
    else:
        text = series.map(lambda v: v.strip() if isinstance(v, str) else v)
        dayfirst = reference_format == "day_first"
        parsed = pd.to_datetime(text, errors="coerce", utc=True, dayfirst=dayfirst)
        retry = parsed.isna() & text.notna()
        if retry.any():
            parsed.loc[retry] = pd.to_datetime(text[retry], errors="coerce", utc=True, format="mixed", dayfirst=dayfirst)
    return parsed.dt.tz_convert(None)
