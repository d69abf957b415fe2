"""The KS statistic and the Wasserstein distance of a batch against a large *prepared* reference,
without merging the two sorted samples. Pure NumPy.

Merging two sorted columns of 1M values costs ~8× a NumPy sort of one of them. Instead, the
reference keeps a grid: every ``stride``-th of its sorted values (and the smallest and largest),
how many reference values lie at or below each, and per interval between two grid values the sum
of (right edge − value) over the reference values inside. Per batch, ``searchsorted`` places the
grid in the sorted batch; between two grid values both CDFs are monotone, so

* the KS statistic inside an interval is bounded by the CDF values at its two ends: only the
  intervals whose bound exceeds the largest gap seen at the grid values are merged exactly
  (the statistic is then bit for bit the one ``scipy.stats.ks_2samp`` computes), and
* the Wasserstein distance (∫|F_ref − F_cur|) over an interval where F_ref − F_cur keeps its sign
  is ∫F_ref − ∫F_cur, which the per-interval sums give in closed form; only intervals where the
  sign may change are merged exactly (the distance agrees with the full merge to ~1e-15 relative,
  ~1e-10 when the values sit far from zero compared with their spread, e.g. a mean of 1e6σ).

What it costs: ``bench/drift.py --reference-speed`` (bench/drift_reference.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from retrain_assets.core.drift_stats import ks_and_wasserstein

GRID_MIN_VALUES = 50_000
"""References with fewer finite values get no grid: the plain merge is as fast there."""


def grid_stride(n: int) -> int:
    """Reference values per grid interval: ~n^¼/2 balances the per-grid-value work (searchsorted,
    bounds) against the values merged exactly near the largest gap (measured at 1M: strides 8–48,
    best 16)."""
    return max(1, int(round(0.5 * n ** 0.25)))


@dataclass(frozen=True)
class ReferenceGrid:
    """Grid values of a sorted finite reference and the counts and sums between them.

    Attributes:
        values: Strictly increasing reference values: every ``stride``-th, the smallest and the largest.
        at_or_below: How many reference values are ≤ each grid value.
        below: How many are < each grid value.
        offsets: Per open interval between consecutive grid values, Σ (right edge − value) over the
            reference values strictly inside (one entry fewer than ``values``).
    """

    values: np.ndarray
    at_or_below: np.ndarray
    below: np.ndarray
    offsets: np.ndarray

    def to_array(self) -> np.ndarray:
        """One (4, K) float64 array (counts are exact in float64 below 2^53), for saving."""
        out = np.zeros((4, len(self.values)), dtype=np.float64)
        out[0], out[1], out[2], out[3, :-1] = self.values, self.at_or_below, self.below, self.offsets
        return out

    @classmethod
    def from_array(cls, array: np.ndarray) -> ReferenceGrid:
        """Read what :meth:`to_array` wrote."""
        return cls(values=np.ascontiguousarray(array[0]), at_or_below=array[1].astype(np.int64),
                   below=array[2].astype(np.int64), offsets=np.ascontiguousarray(array[3, :-1]))


def segment_sums(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Sums of ``values[bounds[i]:bounds[i + 1]]`` (0 for an empty segment); bounds non-decreasing."""
    starts, ends = bounds[:-1], bounds[1:]
    out = np.zeros(len(starts))
    inside = int(np.searchsorted(starts, len(values), "left"))  # segments starting at the end are empty
    if inside == 0:
        return out
    sums = np.add.reduceat(values, starts[:inside])
    filled = ends[:inside] > starts[:inside]
    out[:inside][filled] = sums[filled]
    last = inside - 1
    if filled[last] and ends[last] < len(values):  # reduceat's last segment runs to the end of the array
        out[last] = values[starts[last]:ends[last]].sum()
    return out


def reference_grid(ref_sorted: np.ndarray) -> ReferenceGrid | None:
    """The grid of a sorted finite reference, or None when it is too small to need one or its
    values span more than a float64 can hold (then the plain merge is used).

    Args:
        ref_sorted: Finite reference values, sorted ascending.

    Returns:
        The grid, or None.
    """
    n = len(ref_sorted)
    if n < GRID_MIN_VALUES:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.isfinite(ref_sorted[-1] - ref_sorted[0]):
            return None
    picks = np.arange(0, n, grid_stride(n))
    values = np.unique(np.concatenate([ref_sorted[picks], ref_sorted[-1:]]))
    at_or_below = np.searchsorted(ref_sorted, values, "right")
    below = np.searchsorted(ref_sorted, values, "left")
    bounds = np.empty(2 * len(values) - 1, dtype=np.int64)
    bounds[0::2], bounds[1::2] = at_or_below, below[1:]
    inside = segment_sums(ref_sorted, bounds)[0::2]  # open interval k: ref_sorted[at_or_below[k]:below[k + 1]]
    offsets = (below[1:] - at_or_below[:-1]) * values[1:] - inside
    return ReferenceGrid(values, at_or_below, below, offsets)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + l)`` for each start and length."""
    total = int(lengths.sum())
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(total)


def ks_and_wasserstein_grid(ref_sorted: np.ndarray, grid: ReferenceGrid, cur_sorted: np.ndarray) -> tuple[float, float]:
    """KS statistic and Wasserstein-1 distance of a reference (with its grid) and a current sample.

    The same numbers as :func:`~retrain_assets.core.drift_stats.ks_and_wasserstein` (the statistic
    bit for bit; the distance to rounding), in a fraction of its time on large samples.

    Args:
        ref_sorted: Finite reference values, sorted ascending (the ones ``grid`` was built from).
        grid: :func:`reference_grid` of ``ref_sorted``.
        cur_sorted: Finite current values, sorted ascending, at least one.

    Returns:
        ``(statistic, distance)``.
    """
    G, A, Al = grid.values, grid.at_or_below, grid.below
    n1, n2 = len(ref_sorted), len(cur_sorted)
    with np.errstate(over="ignore", invalid="ignore"):
        if not np.isfinite(max(G[-1], cur_sorted[-1]) - min(G[0], cur_sorted[0])):
            return ks_and_wasserstein(ref_sorted, cur_sorted)
    B = np.searchsorted(cur_sorted, G, "right")
    Bl = B.copy()  # current values < each grid value: B less the ties, which continuous data rarely has
    tied = np.flatnonzero((B > 0) & (cur_sorted[np.maximum(B - 1, 0)] == G))
    if len(tied):
        Bl[tied] = np.searchsorted(cur_sorted, G[tied], "left")
    # At the grid values (reference values, so points of both CDFs), the CDF gaps as scipy computes them.
    statistic = float(np.abs(A / n1 - B / n2).max())
    under = int(Bl[0])  # current values below the whole reference, where F_ref is 0
    if under:
        statistic = max(statistic, under / n2)
    Ak, Bk, An, Bn = A[:-1], B[:-1], Al[1:], Bl[1:]
    # On [G_k, G_k+1) F_ref lies in [Ak/n1, An/n1] and F_cur in [Bk/n2, Bn/n2].
    hi = An / n1 - Bk / n2
    lo = Ak / n1 - Bn / n2
    occupied = (An > Ak) | (Bn > Bk)
    exact = occupied & ((np.maximum(hi, -lo) > statistic) | ((lo < 0) & (hi > 0)))
    # Closed form of n1·n2·∫(F_ref − F_cur) over each interval, from the counts at its left end
    # and the sums of (right end − value) inside it.
    if len(tied):  # segments: below, tie at G_0, open 0, tie at G_1, ..., above
        bounds = np.empty(2 * len(G) + 2, dtype=np.int64)
        bounds[0], bounds[1:-1:2], bounds[2:-1:2], bounds[-1] = 0, Bl, B, n2
        sums = segment_sums(cur_sorted, bounds)
        inside_sums = sums[2:-1:2]
    else:  # no batch value equals a grid value: below, open 0, open 1, ..., above
        sums = segment_sums(cur_sorted, np.concatenate([[0], B, [n2]]))
        inside_sums = sums[1:-1]
    with np.errstate(over="ignore", invalid="ignore"):
        inside_cur = (Bn - Bk) * G[1:] - inside_sums
        area = (n2 * Ak - n1 * Bk).astype(np.float64) * np.diff(G) + n2 * grid.offsets - n1 * inside_cur
        np.abs(area, out=area)
        distance = float(area[~exact].sum()) / (float(n1) * float(n2))
        if under:
            distance += (under * G[0] - sums[0]) / n2
        over = n2 - int(B[-1])
        if over:
            distance += (sums[-1] - over * G[-1]) / n2
    picked = np.flatnonzero(exact)
    if len(picked):
        statistic, inside = _merge_intervals(ref_sorted, cur_sorted, grid, B, Bl, picked, statistic)
        distance += inside
    return statistic, float(distance)


def _merge_intervals(ref_sorted: np.ndarray, cur_sorted: np.ndarray, grid: ReferenceGrid, B: np.ndarray,
                     Bl: np.ndarray, picked: np.ndarray, statistic: float) -> tuple[float, float]:
    """The exact KS maximum and ∫|F_ref − F_cur| over the picked intervals, from their merged values."""
    G, A, Al = grid.values, grid.at_or_below, grid.below
    n1, n2 = len(ref_sorted), len(cur_sorted)
    Ak, Bk = A[picked], B[picked]
    ref_len, cur_len = Al[picked + 1] - Ak, Bl[picked + 1] - Bk
    ref_in = ref_sorted[_ranges(Ak, ref_len)]
    cur_in = cur_sorted[_ranges(Bk, cur_len)]
    points = np.concatenate([ref_in, cur_in])
    points.sort()
    left = G[picked]
    which = np.searchsorted(left, points, "right") - 1  # the picked interval each point lies in
    # CDF counts at each point: the counts at the interval's left end plus those inside up to the point.
    a = np.searchsorted(ref_in, points, "right") + (Ak - (np.cumsum(ref_len) - ref_len))[which]
    b = np.searchsorted(cur_in, points, "right") + (Bk - (np.cumsum(cur_len) - cur_len))[which]
    gap = np.abs(a / n1 - b / n2)
    statistic = max(statistic, float(gap.max()))
    last = np.empty(len(points), dtype=bool)
    np.not_equal(which[1:], which[:-1], out=last[:-1])
    last[-1] = True
    first = np.empty_like(last)
    first[0], first[1:] = True, last[:-1]
    with np.errstate(over="ignore", invalid="ignore"):
        nxt = np.empty_like(points)
        nxt[:-1] = points[1:]
        nxt[last] = G[picked + 1][which[last]]
        nxt -= points
        lead = points[first] - left  # from the grid value to the first point inside
        inside = float(np.einsum("i,i->", gap, nxt)) + float(np.einsum("i,i->", np.abs(Ak / n1 - Bk / n2), lead))
    return statistic, inside
