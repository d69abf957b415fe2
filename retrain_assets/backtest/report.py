"""A backtest over every policy, its verdict on the platform's targets, and the report: a Markdown
table, a PNG of the metric per batch and a CSV."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from retrain_assets.core.performance import better_by
from retrain_assets.core.performance import HIGHER_IS_BETTER
from retrain_assets.core.policy import PolicySettings
from retrain_assets.core.schema import DatasetSchema
from retrain_assets.core.markdown import markdown_table
from retrain_assets.settings import Settings
from retrain_assets.backtest.stream import Batch, DEFAULT_INITIAL
from retrain_assets.backtest.replay import FALSE_RETRAIN_MARGIN, PolicyRun, Replay
from retrain_assets.backtest.policies import EveryBatch, EveryBatchNewest, EveryK, Never, Platform, Textbook, policy_settings, run_policy

DEFAULT_EVERY = 5
TARGET_METRIC_GAP = 0.005
"""Target: the platform's mean metric within half a point of retraining after every batch."""

TARGET_RETRAIN_SHARE = 1 / 3
"""Target: the platform retrains at most a third as often as retraining after every batch."""

POLICIES = ("never", "every_batch", "every_batch_newest", "every_k", "textbook", "platform")
DEFAULT_POLICIES = ("never", "every_batch", "every_k", "textbook", "platform")
"""What the command line runs unless told (``--policies``)."""


@dataclass
class BacktestResult:
    """Every policy's run over one stream."""

    runs: list[PolicyRun]
    batches: list[Batch]
    metric: str
    initial: int
    policy_source: str
    seconds: float = 0.0

    def run(self, name: str) -> PolicyRun:
        """The run of one policy."""
        return next(r for r in self.runs if r.policy == name)

    @property
    def scored(self) -> list[str]:
        """Batches every policy was scored on."""
        return [b.batch_id for b in self.batches[self.initial:]]

    @property
    def final_period(self) -> list[str]:
        """The last third of the stream (at least one batch, only scored ones)."""
        tail = [b.batch_id for b in self.batches[-max(1, len(self.batches) // 3):]]
        return [b for b in tail if b in self.scored]

    def per_batch(self) -> pd.DataFrame:
        """One row per scored batch: its note and each policy's metric and retrain."""
        notes = {b.batch_id: b.note for b in self.batches}
        rows = []
        for batch_id in self.scored:
            row = {"batch_id": batch_id, "note": notes[batch_id]}
            for run in self.runs:
                row[run.policy] = run.metrics[batch_id]
                row[f"{run.policy}_retrain"] = next(
                    (e.trigger + ("" if e.deployed else " (kept out)") for e in run.retrains if e.after_batch == batch_id), "")
            rows.append(row)
        return pd.DataFrame(rows)

    def table(self) -> pd.DataFrame:
        """The comparison: one row per policy."""
        rows = []
        for run in self.runs:
            values = pd.Series(run.metrics, dtype=float)
            rows.append({
                "policy": run.policy,
                f"mean {self.metric}": round(float(values.mean()), 4),
                f"final-third {self.metric}": round(float(values[self.final_period].mean()), 4),
                "retrains": len(run.retrains),
                "training s": round(run.training_seconds, 1),
                "false retrains": run.false_retrains,
                "kept out by gate": run.blocked if run.policy == "platform" else "–",
                "rollbacks": len(run.rollbacks) if run.policy == "platform" else "–",
                "rule": run.description,
            })
        return pd.DataFrame(rows)

    def verdicts(self) -> list[tuple[str, bool]]:
        """The platform's targets, (sentence, passed) each; empty unless platform, every_batch and
        textbook all ran."""
        table = self.table().set_index("policy")
        if not {"platform", "every_batch", "textbook"} <= set(table.index):
            return []
        mean = f"mean {self.metric}"
        platform, every, textbook = (table.loc[p] for p in ("platform", "every_batch", "textbook"))
        gap = better_by(self.metric, platform[mean], every[mean])
        limit = math.floor(every["retrains"] * TARGET_RETRAIN_SHARE)
        vs_textbook = better_by(self.metric, platform[mean], textbook[mean])
        word = "points" if HIGHER_IS_BETTER[self.metric] else "units"
        return [
            (f"platform mean {self.metric} {platform[mean]:.4f} vs every_batch {every[mean]:.4f}: "
             f"{gap * 100:+.2f} {word} (target: within {TARGET_METRIC_GAP * 100:.1f})", bool(gap >= -TARGET_METRIC_GAP)),
            (f"platform retrains {platform['retrains']} vs every_batch {every['retrains']} "
             f"(target: at most a third, {limit})", bool(platform["retrains"] <= limit)),
            (f"platform mean {self.metric} {platform[mean]:.4f} vs textbook {textbook[mean]:.4f}: "
             f"{vs_textbook * 100:+.2f} {word} (target: better)", bool(vs_textbook > 0)),
            (f"platform retrains {platform['retrains']} vs textbook {textbook['retrains']} (target: fewer)",
             bool(platform["retrains"] < textbook["retrains"])),
        ]

    def plot(self, path: Path, *, title: str) -> Path:
        """A PNG: the metric per batch per policy (top) and when each policy retrained (bottom).

        Returns:
            The PNG path (folders are created).
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path.parent.mkdir(parents=True, exist_ok=True)
        frame = self.per_batch()
        x = np.arange(self.initial + 1, self.initial + 1 + len(frame))
        position = dict(zip(frame["batch_id"], x))
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True,
                                          gridspec_kw={"height_ratios": [3, 1.1]})
        styles = {
            "never": dict(color="#7f7f7f", lw=1.2, ls=":"),
            "every_batch": dict(color="#1f77b4", lw=5, alpha=0.35),
            "every_k": dict(color="#2ca02c", lw=1.3),
            "textbook": dict(color="#d62728", lw=1.3, ls="--"),
            "platform": dict(color="#9467bd", lw=2.2),
        }
        for run in self.runs:
            top.plot(x, frame[run.policy].to_numpy(dtype=float), marker=".", label=self._label(run),
                     **styles.get(run.policy, {}))
        stretches: list[list] = []
        for k, note in enumerate(frame["note"]):
            if stretches and stretches[-1][2] == note:
                stretches[-1][1] = k
            else:
                stretches.append([k, k, note])
        for n, (first, last, note) in enumerate(stretches):
            if n % 2:
                for ax in (top, bottom):
                    ax.axvspan(x[first] - 0.5, x[last] + 0.5, color="#f2f2f2", zorder=0)
            top.text(x[first] - 0.4, 0.98, note, transform=top.get_xaxis_transform(), fontsize=6.5,
                     rotation=90, va="top", color="#555555")
        top.set_ylabel(f"{self.metric} of the deployed model")
        top.set_title(title, fontsize=9)
        top.grid(alpha=0.3)
        top.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        for row, run in enumerate(self.runs):
            done = [position[e.after_batch] for e in run.retrains if e.deployed]
            kept = [position[e.after_batch] for e in run.retrains if not e.deployed]
            colour = styles.get(run.policy, {}).get("color")
            bottom.scatter(done, [row] * len(done), marker="|", s=120, color=colour)
            bottom.scatter(kept, [row] * len(kept), marker="x", s=30, color=colour)
            back = [position[b] for b in run.rollbacks]
            bottom.scatter(back, [row] * len(back), marker="<", s=30, color=colour)
        bottom.set_yticks(range(len(self.runs)), [r.policy for r in self.runs], fontsize=8)
        bottom.set_ylim(-0.6, len(self.runs) - 0.4)
        bottom.set_title("retrains after the batch (| deployed, x kept out by the gate, < rolled back)", fontsize=8)
        bottom.set_xlabel("batch (arrival order)")
        bottom.grid(alpha=0.3, axis="x")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path

    def _label(self, run: PolicyRun) -> str:
        mean = float(pd.Series(run.metrics, dtype=float).mean())
        return f"{run.policy} (mean {mean:.3f}, {len(run.retrains)} retrains)"


def run_backtest(
    cfg: Settings,
    batches: Sequence[Batch],
    *,
    every: int = DEFAULT_EVERY,
    initial: int = DEFAULT_INITIAL,
    settings: PolicySettings | None = None,
    policy_source: str = "",
    schedule: bool = True,
    policies: Sequence[str] = DEFAULT_POLICIES,
    schema: DatasetSchema | None = None,
) -> BacktestResult:
    """Replay ``batches`` under the policies.

    Args:
        cfg: The settings (dataset, model, training window, gates, drift thresholds).
        batches: The stream in arrival order.
        every: k of the every-k policy.
        initial: Batches the first model learns from.
        settings: The platform's policy controls; default :func:`policy_settings` of ``cfg``.
        policy_source: Where ``settings`` came from (printed).
        schedule: Whether the platform's safety-net schedule runs.
        policies: Which policies to run (names from :data:`POLICIES`).
        schema: The dataset schema; default: inferred from the first batch under the config's hints.

    Returns:
        The result.
    """
    started = time.perf_counter()
    if settings is None:
        settings, policy_source = policy_settings(cfg)
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policies {unknown}; choose from {POLICIES}")
    make = {
        "never": Never, "every_batch": EveryBatch, "every_batch_newest": EveryBatchNewest, "every_k": lambda: EveryK(every), "textbook": Textbook,
        "platform": lambda: Platform(settings, schedule=schedule),
    }
    replay = Replay(cfg, batches, initial=initial, schema=schema)
    runs = [run_policy(replay, make[name]()) for name in policies]
    return BacktestResult(runs, list(batches), cfg.metric, initial, policy_source, time.perf_counter() - started)


def format_report(result: BacktestResult, *, command: str, out: Path | None) -> str:
    """The printed report: the table, the verdicts, the platform's retrains, the files."""
    lines = [f"$ {command}", ""]
    lines.append(f"{len(result.batches)} batches, the first {result.initial} train the first model for every policy; "
                 f"{len(result.scored)} scored, final third = {result.final_period[0]}…{result.final_period[-1]}")
    notes = [(b.batch_id, b.note) for b in result.batches]
    stretches = []
    for batch_id, note in notes:
        if stretches and stretches[-1][2] == note:
            stretches[-1][1] = batch_id
        else:
            stretches.append([batch_id, batch_id, note])
    lines.append("stream: " + "; ".join(f"{a}…{b}: {n}" if a != b else f"{a}: {n}" for a, b, n in stretches))
    lines.append(f"platform policy: {result.policy_source}")
    lines += ["", markdown_table(result.table()), ""]
    lines.append(f"false retrain = the candidate beat the model it replaced by < {FALSE_RETRAIN_MARGIN:g} {result.metric} "
                 "on the next labelled batch (a retrain after the last batch is not judged). Training s = fit time "
                 "of the retrains (the first model excluded).")
    lines.append("")
    for sentence, passed in result.verdicts():
        lines.append(f"[{'PASS' if passed else 'FAIL'}] {sentence}")
    for run in result.runs:
        if run.policy in ("textbook", "platform"):
            triggers = pd.Series([e.trigger for e in run.retrains], dtype=object).value_counts().to_dict()
            lines.append(f"{run.policy} retrain triggers: {triggers}")
    platform = next((r for r in result.runs if r.policy == "platform"), None)
    if platform is not None:
        lines += ["", "platform retrains (gain = candidate minus the model it replaced, on the next labelled batch):"]
        for e in platform.retrains:
            gain = "" if e.gain is None else f", gain on {e.next_batch} {e.gain:+.4f}"
            outcome = "failed: " + e.failed if e.failed else ("deployed" if e.deployed else "kept out by the gate")
            why = e.reason.split("actionable drift — ", 1)[-1]
            if e.trigger in ("concept_drift", "performance_decline") and "champion " in why:
                why = why[why.index("champion "):]
            lines.append(f"  after {e.after_batch}: {e.trigger} → {outcome}{gain} | {_shorten(why, 110)}")
        for batch_id in platform.rollbacks:
            lines.append(f"  rolled back after {batch_id}: {_shorten(platform.decisions[batch_id], 150)}")
    if out is not None:
        lines += ["", f"plot: {out}", f"per-batch metrics: {out.with_suffix('.csv')}"]
    lines.append(f"replay took {result.seconds:.1f} s")
    return "\n".join(lines)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


