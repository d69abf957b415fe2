"""Benchmark: drift against a cached reference (speed), and a 10M-row batch in bounded memory.

Run through ``bench/drift.py`` (which adds the PASS/FAIL lines to its targets) or alone:

    .venv/bin/python bench/drift.py --reference-speed   # 1M × 20: per-column drift vs one sort, ~1 min
    .venv/bin/python bench/drift.py --large             # 10M × 20 in DuckDB, peak memory, ~5 min, ~6 GB disk

Speed: 1M rows × 20 N(0, 1) columns (x0 shifted by 0.01σ, as in bench/drift.py's perf cases), side
by side in one process, best of ``repeats``: one NumPy sort of each column of the *current* batch
alone; ``detect_drift`` per column (domain classifier off) against the reference prepared once, in
memory and read back from the disk cache; the same with the domain classifier; and without a cache
(the reference frame, sorted per batch). Then where the per-column time goes.

Memory: a current batch and a reference of 10M rows × 20 columns in a DuckDB warehouse,
``drift_in_warehouse`` with ``storage.memory_limit_mb`` in a fresh process, cold (the reference
cache is built) and warm; peak RSS against the limit.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from retrain_assets.core.drift import detect_drift  # noqa: E402
from retrain_assets.core.drift_cache import ReferenceCache  # noqa: E402
from retrain_assets.core.drift_columns import QUANTILES, finite_sorted  # noqa: E402
from retrain_assets.core.drift_grid import ks_and_wasserstein_grid  # noqa: E402
from retrain_assets.core.drift_reference import prepare_reference  # noqa: E402
from retrain_assets.core.drift_settings import DriftSettings  # noqa: E402
from retrain_assets.core.drift_stats import ks_p_value, ks_statistic_as_scipy, sorted_quantiles  # noqa: E402

TARGET_RATIO = 1.3
KEY = "0" * 64


def frames(rows: int, cols: int) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Reference and current as bench/drift.py's perf cases make them (x0 shifted by 0.01σ)."""
    rng = np.random.default_rng(7)
    names = [f"x{i}" for i in range(cols)]
    ref = pd.DataFrame({c: rng.standard_normal(rows) for c in names}, copy=False)
    cur = pd.DataFrame({c: rng.standard_normal(rows) + (0.01 if i == 0 else 0.0) for i, c in enumerate(names)},
                       copy=False)
    return ref, cur, names


def _best(times: dict[str, list[float]], name: str, seconds: float) -> None:
    times.setdefault(name, []).append(seconds)


def reference_speed(rows: int = 1_000_000, cols: int = 20, repeats: int = 5) -> dict:
    """Time the cases side by side (see the module docstring); returns the best time of each."""
    ref, cur, names = frames(rows, cols)
    t0 = time.perf_counter()
    prepared = prepare_reference(ref, names, [], DriftSettings())
    prepare_seconds = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="drift-reference-bench-") as folder:
        t0 = time.perf_counter()
        ReferenceCache(Path(folder)).save(prepared, KEY)
        save_seconds = time.perf_counter() - t0
        times = _side_by_side(ref, cur, names, prepared, Path(folder), repeats)
    best = {name: min(values) for name, values in times.items()}
    best.update(prepare=prepare_seconds, save=save_seconds, rows=rows, cols=cols, repeats=repeats)
    return best


def _side_by_side(ref: pd.DataFrame, cur: pd.DataFrame, names: list[str], prepared, folder: Path,
                  repeats: int) -> dict[str, list[float]]:
    columns_only, full = DriftSettings(domain_classifier=False), DriftSettings()
    detect_drift(prepared, cur.iloc[:1000])  # imports, warm-up
    times: dict[str, list[float]] = {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        for c in names:
            np.sort(cur[c].to_numpy())
        _best(times, "sort", time.perf_counter() - t0)
        t0 = time.perf_counter()
        detect_drift(prepared, cur, settings=columns_only)
        _best(times, "columns, warm in memory", time.perf_counter() - t0)
        t0 = time.perf_counter()
        detect_drift(ReferenceCache(folder).load(KEY), cur, settings=columns_only)
        _best(times, "columns, warm from disk", time.perf_counter() - t0)
        t0 = time.perf_counter()
        detect_drift(prepared, cur, settings=full)
        _best(times, "columns + domain, warm", time.perf_counter() - t0)
        t0 = time.perf_counter()
        detect_drift(ref, cur, settings=columns_only)
        _best(times, "columns, no cache", time.perf_counter() - t0)
        _parts(prepared, cur, names, times)
    return times


def _parts(prepared, cur: pd.DataFrame, names: list[str], times: dict[str, list[float]]) -> None:
    """Where a warm per-column check spends its time, summed over the columns."""
    parts = dict.fromkeys(("isfinite", "sort (copy)", "mean, std, quantiles", "KS + Wasserstein (grid)",
                           "KS p-value", "slowest p-value"), 0.0)
    for c in names:
        values = cur[c].to_numpy(dtype=np.float64, na_value=np.nan)
        t0 = time.perf_counter()
        np.isfinite(values).all()
        t1 = time.perf_counter()
        ordered, _, _ = finite_sorted(values)
        t2 = time.perf_counter()
        ordered.mean(), ordered.std(ddof=1), sorted_quantiles(ordered, QUANTILES)
        t3 = time.perf_counter()
        reference = prepared.numeric[c]
        statistic, _ = ks_and_wasserstein_grid(reference.values, reference.grid, ordered)
        t4 = time.perf_counter()
        ks_p_value(ks_statistic_as_scipy(statistic, len(reference.values), len(ordered)), len(reference.values),
                   len(ordered))
        t5 = time.perf_counter()
        parts["isfinite"] += t1 - t0
        parts["sort (copy)"] += t2 - t1 - (t1 - t0)  # finite_sorted checks isfinite first
        parts["mean, std, quantiles"] += t3 - t2
        parts["KS + Wasserstein (grid)"] += t4 - t3
        parts["KS p-value"] += t5 - t4
        parts["slowest p-value"] = max(parts["slowest p-value"], t5 - t4)
    for name, seconds in parts.items():
        _best(times, f"part: {name}", seconds)


def report_speed(best: dict) -> list[tuple[str, bool, str]]:
    """Print the table; return the targets."""
    sort = best["sort"]
    print(f"\n## Drift against a cached reference, {best['rows']:,} rows × {best['cols']} numeric columns "
          f"(side by side, best of {best['repeats']})")
    print(f"prepared once: {best['prepare']:.2f} s (sort and grid of every reference column, domain sample); "
          f"written to the disk cache: {best['save']:.2f} s")
    print(f"{'case':<42} {'seconds':>8} {'×sort':>7}")
    for name in ("sort", "columns, warm in memory", "columns, warm from disk", "columns + domain, warm",
                 "columns, no cache"):
        label = "NumPy sort of the current batch alone" if name == "sort" else f"detect_drift: {name}"
        print(f"{label:<42} {best[name]:>8.3f} {best[name] / sort:>7.2f}")
    print("where the warm per-column time goes (summed over the columns):")
    for name in ("isfinite", "sort (copy)", "mean, std, quantiles", "KS + Wasserstein (grid)", "KS p-value",
                 "slowest p-value"):
        print(f"  {name:<40} {best[f'part: {name}']:>8.3f} {best[f'part: {name}'] / sort:>7.2f}")
    parts = sum(best[f"part: {n}"] for n in ("isfinite", "sort (copy)", "mean, std, quantiles",
                                            "KS + Wasserstein (grid)", "KS p-value"))
    print(f"  {'the rest (PSI, verdict, table)':<40} {best['columns, warm in memory'] - parts:>8.3f} "
          f"{(best['columns, warm in memory'] - parts) / sort:>7.2f}")
    ratio = best["columns, warm in memory"] / sort
    return [(f"{best['rows'] // 1_000_000}M×{best['cols']} per-column drift, warm reference cache, within "
             f"{TARGET_RATIO}× one NumPy sort of the current batch", ratio <= TARGET_RATIO,
             f"{best['columns, warm in memory']:.3f} s vs {sort:.3f} s = {ratio:.2f}×")]


# --- 10M rows in bounded memory ----------------------------------------------------------------


def _normal(j: int, side: int) -> str:
    """A N(0, 1) column from DuckDB's hash (deterministic at any thread count), by Box–Muller."""
    u = [f"(((hash(i, {j}, {side}, {k}) >> 11)::DOUBLE + 0.5) / 9007199254740992.0)" for k in (0, 1)]
    return f"sqrt(-2 * ln({u[0]})) * cos(2 * pi() * {u[1]})"


def build_warehouse(path: Path, rows: int, ref_rows: int, cols: int) -> None:
    """A warehouse holding batch ``ref`` (ref_rows) and batch ``cur`` (rows, x0 shifted by 0.05σ)."""
    import duckdb

    from retrain_assets.core import storage

    with duckdb.connect(str(path)) as conn:
        storage.ensure_tables(conn)
        for batch, n, side in (("ref", ref_rows, 0), ("cur", rows, 1)):
            values = ", ".join(f"{_normal(j, side)}{' + 0.05' if side and j == 0 else ''} AS x{j}" for j in range(cols))
            select = f"SELECT '{batch}' AS _batch_id, i AS _row, {values} FROM range({n}) t(i)"
            conn.execute(f"CREATE TABLE validated AS {select}" if batch == "ref" else f"INSERT INTO validated {select}")
            conn.execute("INSERT INTO batch_validation VALUES (?, ?, TRUE, FALSE, ?, ?, 0, 0.0, 0.05, [], [], 'bench', ?, "
                         "NULL)", [batch, f"bench-{batch}-{n}", n, n, datetime(2026, 11, 1, tzinfo=timezone.utc)])


def _status_bytes(field: str) -> int:
    """VmRSS / VmHWM (peak) of this process from /proc: unlike ru_maxrss, the peak is not inherited
    from the parent at fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def large_case(path: Path, cache: Path, cols: int, limit_mb: int) -> dict:
    """One bounded-memory check in this (fresh) process: time, peak RSS, what it did."""
    import duckdb

    from retrain_assets.core.drift_warehouse import drift_in_warehouse

    numeric = [f"x{j}" for j in range(cols)]
    rss_start = _status_bytes("VmRSS")
    t0 = time.perf_counter()
    with duckdb.connect(str(path), read_only=True) as conn:
        out = drift_in_warehouse(conn, batch_id="cur", reference_ids=["ref"], numeric=numeric, categorical=[],
                                 settings=DriftSettings(), cache_dir=cache, memory_limit_mb=limit_mb)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_rss": _status_bytes("VmHWM"),
            "rss_before": rss_start, "sampled": out.sampled, "n_current": out.n_current, "n_reference": out.n_reference,
            "sample_rows": len(out.current), "drifted": out.result.drifted_features,
            "domain_rows": out.result.multivariate.get("rows_used"), "notes": out.notes}


def large(rows: int, ref_rows: int, cols: int, limit_mb: int, folder: Path | None) -> list[tuple[str, bool, str]]:
    """Build (or reuse) the warehouse, run the check cold then warm in fresh processes, print, return targets."""
    folder = folder or Path(tempfile.mkdtemp(prefix="drift-large-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    path, cache = folder / f"warehouse-{rows}-{ref_rows}-{cols}.duckdb", folder / "cache"
    if not path.exists():
        t0 = time.perf_counter()
        build_warehouse(path, rows, ref_rows, cols)
        print(f"built {path} ({path.stat().st_size / 2**30:.1f} GiB) in {time.perf_counter() - t0:.0f} s")
    if cache.exists():  # cold: no cache entry yet (the folder is this benchmark's own)
        shutil.rmtree(cache)
    print(f"\n## {rows:,} rows × {cols} columns against {ref_rows:,} reference rows, storage.memory_limit_mb = "
          f"{limit_mb:,} (fresh process per run)")
    results = {}
    for run in ("cold (builds the cache)", "warm"):
        cmd = [sys.executable, __file__, "--large-case", str(path), str(cache), str(cols), str(limit_mb)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[run] = r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{run:<24} {r['seconds']:>7.1f} s  peak RSS {r['peak_rss'] / 2**20:>6.0f} MB (at start "
              f"{r['rss_before'] / 2**20:.0f} MB)  column by column: {r['sampled']}, monitoring samples of "
              f"{r['sample_rows']:,} rows, domain classifier on {r['domain_rows']:,} rows, drifted {r['drifted']}")
    size = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 2**20
    print(f"cache entry: {size:,.0f} MB on disk")
    worst = max(r["peak_rss"] for r in results.values()) / 2**20
    return [(f"{rows // 1_000_000}M×{cols} drift check within storage.memory_limit_mb = {limit_mb:,} (peak RSS)",
             worst <= limit_mb, f"{worst:,.0f} MB")]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--large-case":
        print(json.dumps(large_case(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))))
    else:
        targets = report_speed(reference_speed())
        for name, ok, detail in targets:
            print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
