"""``python -m retrain_assets.backtest``: the command line of the backtester."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Sequence

from retrain_assets.core import synthetic
from retrain_assets.settings import load_settings
from retrain_assets.backtest.stream import DEFAULT_BATCHES, DEFAULT_INITIAL, DEFAULT_ROWS, DEFAULT_SEED, demo_stream, landing_stream
from retrain_assets.backtest.policies import policy_settings
from retrain_assets.backtest.report import DEFAULT_EVERY, DEFAULT_POLICIES, POLICIES, format_report, run_backtest


def _parse_overrides(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--policy-setting wants KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m retrain_assets.backtest", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None, help="config file (default: $RETRAIN_CONFIG or the demo config)")
    parser.add_argument("--landing", type=Path, default=None,
                        help="replay the CSV/Parquet batches of this folder (batch-id order) instead of the demo stream")
    parser.add_argument("--batches", type=int, default=DEFAULT_BATCHES, help="demo stream: number of batches")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="demo stream: rows per batch")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="demo stream: base seed")
    parser.add_argument("--every", type=int, default=DEFAULT_EVERY, help="k of the every-k policy")
    parser.add_argument("--initial", type=int, default=DEFAULT_INITIAL, help="batches the first model learns from")
    parser.add_argument("--policy-setting", action="append", default=[], metavar="KEY=VALUE",
                        help="override a PolicySettings field of the platform policy (repeatable)")
    parser.add_argument("--policies", default=",".join(DEFAULT_POLICIES),
                        help=f"comma-separated policies to replay, from {', '.join(POLICIES)}")
    parser.add_argument("--no-schedule", action="store_true", help="the platform policy without its safety-net schedule")
    parser.add_argument("--out", type=Path, default=None,
                        help="PNG to write (default: <storage.root>/reports/backtest.png); a CSV is written beside it")
    args = parser.parse_args(argv)

    cfg = load_settings(args.config)
    schema = None
    if args.landing is not None:
        batches, schema, skipped = landing_stream(args.landing, cfg)
        for note in skipped:
            print(f"skipped {note}")
    else:
        if (cfg.dataset.target, cfg.dataset.task) != (synthetic.TARGET, "classification"):
            parser.error(f"the demo stream is the synthetic churn data (target {synthetic.TARGET!r}); the config's "
                         f"dataset is {cfg.dataset.target!r} ({cfg.dataset.task}): pass --landing with your batches")
        batches = demo_stream(args.batches, args.rows, args.seed, initial=args.initial)
    try:
        settings, source = policy_settings(cfg, _parse_overrides(args.policy_setting))
    except ValueError as error:
        parser.error(str(error))
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = [p for p in policies if p not in POLICIES]
    if unknown or not policies:
        parser.error(f"--policies: unknown {unknown}; choose from {', '.join(POLICIES)}")
    result = run_backtest(cfg, batches, every=args.every, initial=args.initial, settings=settings,
                          policy_source=source, schedule=not args.no_schedule, schema=schema, policies=policies)
    out = args.out or cfg.reports_dir / "backtest.png"
    command = "python -m retrain_assets.backtest" + "".join(
        " " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    result.plot(out, title=f"{command}\n{result.metric} of the deployed model per batch")
    result.per_batch().to_csv(out.with_suffix(".csv"), index=False)
    print(format_report(result, command=command, out=out))
    return 0

