"""Benchmark: reading and validating one landed batch (CSV and Parquet) at growing sizes.

Prints wall time per stage and the peak resident memory of a fresh process per size, for the
demo schema (10 columns, 1% corrupt rows). Not part of `make test`; run on demand:

    .venv/bin/python bench/validation.py [--sizes 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one(n_rows: int, fmt: str) -> dict:
    """Measure one size in this process (called in a fresh subprocess)."""
    sys.path.insert(0, str(ROOT))
    from retrain_assets.constants import DEMO_CONFIG_PATH
    from retrain_assets.core import synthetic_batches
    from retrain_assets.core import ingestion
    from retrain_assets.core.validation import validate_batch
    from retrain_assets.settings import load_settings

    settings = load_settings(DEMO_CONFIG_PATH)
    with tempfile.TemporaryDirectory() as tmp:
        df = synthetic_batches.make_batch(n_rows, seed=1, scenario="corrupt", corrupt_fraction=0.01)
        path = synthetic_batches.write_batch(df, Path(tmp) / f"b.{fmt}") if fmt == "csv" else None
        if fmt == "parquet":
            clean = synthetic_batches.make_batch(n_rows, seed=1)
            path = synthetic_batches.write_batch(clean, Path(tmp) / "b.parquet")
        del df
        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        fp = ingestion.fingerprint(path)
        t1 = time.perf_counter()
        raw = ingestion.read_batch(path)
        t2 = time.perf_counter()
        schema = settings.schema_for(None, raw, "b")
        report = validate_batch(raw, schema, batch_id="b")
        t3 = time.perf_counter()
        file_mb = round(path.stat().st_size / 1e6, 1)
    return {
        "rows": n_rows,
        "format": fmt,
        "file_mb": file_mb,
        "sha256_s": round(t1 - t0, 3),
        "read_s": round(t2 - t1, 2),
        "validate_s": round(t3 - t2, 2),
        "rows_per_s": int(n_rows / (t3 - t1)),
        "quarantined": report.quarantined_rows,
        "peak_rss_mb": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_before_mb": int(base_rss),
        "fp": fp[:8],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--formats", nargs="+", default=["csv", "parquet"])
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(int(args.one[0]), args.one[1])))
        return 0
    print(f"{'rows':>9} {'fmt':>8} {'MB':>6} {'sha256 s':>9} {'read s':>7} {'validate s':>10} {'rows/s':>9} {'quar.':>6} {'peak RSS MB':>11}")
    for size in args.sizes:
        for fmt in args.formats:
            out = subprocess.run([sys.executable, __file__, "--one", str(size), fmt], capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{r['rows']:>9} {r['format']:>8} {r['file_mb']:>6} {r['sha256_s']:>9} {r['read_s']:>7} {r['validate_s']:>10} {r['rows_per_s']:>9} {r['quarantined']:>6} {r['peak_rss_mb']:>11}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
