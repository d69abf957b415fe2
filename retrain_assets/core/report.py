"""Human-readable drift reports: a PNG of reference vs current distributions and a self-contained
HTML page (table + the PNG inlined). Pure Python (matplotlib, no Dagster)."""

from __future__ import annotations

import html
import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from retrain_assets.core import files
from retrain_assets.core.markdown import png_data_uri


def plot_distributions(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[tuple[str, str]],
    path: Path,
    *,
    title: str,
    max_categories: int = 12,
    columns: int = 3,
    dpi: int = 80,
    colors: int = 64,
) -> Path:
    """Reference vs current distribution of each feature, one panel per feature.

    The panels fill rows of ``columns``, so the picture stays about 900 px wide whatever the number
    of features, and the PNG is saved with a palette of ``colors`` colours (two flat colours and
    their blend, plus anti-aliasing: 64 look the same as true colour at a third of the size). At
    the defaults 3 panels take ~12 KB and 12 panels ~42 KB, small enough to inline in Dagster
    metadata (see :func:`png_data_uri`).

    Args:
        reference: Reference rows.
        current: Current rows.
        features: ``(name, kind)`` pairs, kind "numeric" or "categorical".
        path: PNG file to write (folders are created).
        title: Figure title.
        max_categories: Categories shown per categorical panel (most frequent in either frame).
        columns: Panels per row.
        dpi: Resolution of the PNG (pixels per inch of the figure).
        colors: Size of the PNG's palette (at most 256).

    Returns:
        The PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    n = max(1, len(features))
    ncols = min(n, columns)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.8 * ncols, 2.9 * nrows + 0.4), squeeze=False)
    for ax in axes.ravel()[len(features):]:
        ax.axis("off")
    for ax, (name, kind) in zip(axes.ravel(), features):
        ref, cur = reference[name], current[name]
        if kind == "numeric":
            r = pd.to_numeric(ref, errors="coerce").to_numpy(dtype=float)
            c = pd.to_numeric(cur, errors="coerce").to_numpy(dtype=float)
            r, c = r[np.isfinite(r)], c[np.isfinite(c)]
            both = np.concatenate([r, c]) if len(r) + len(c) else np.array([0.0])
            lo, hi = np.quantile(both, [0.005, 0.995]) if len(both) > 1 else (both[0] - 1, both[0] + 1)
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
            ax.hist(r, bins=bins, density=True, alpha=0.5, label=f"reference (n={len(r)})", color="#4C72B0")
            ax.hist(c, bins=bins, density=True, alpha=0.5, label=f"current (n={len(c)})", color="#DD8452")
        else:
            rs = ref.astype(object).where(ref.notna(), "(missing)").astype(str).value_counts(normalize=True)
            cs = cur.astype(object).where(cur.notna(), "(missing)").astype(str).value_counts(normalize=True)
            cats = list((rs.add(cs, fill_value=0)).sort_values(ascending=False).index[:max_categories])
            x = np.arange(len(cats))
            ax.bar(x - 0.2, [rs.get(k, 0) for k in cats], 0.4, label="reference", color="#4C72B0")
            ax.bar(x + 0.2, [cs.get(k, 0) for k in cats], 0.4, label="current", color="#DD8452")
            ax.set_xticks(x, cats, rotation=45, ha="right", fontsize=8)
            ax.set_ylabel("share")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    rendered = io.BytesIO()
    fig.savefig(rendered, format="png", dpi=dpi)
    plt.close(fig)
    return files.write_atomic(path, _palette_png(rendered.getvalue(), colors))  # whole or not at all


def _palette_png(png: bytes, colors: int) -> bytes:
    """The PNG re-encoded with a palette of ``colors`` colours (median cut)."""
    from PIL import Image

    if not 2 <= colors <= 256:
        raise ValueError(f"a PNG palette holds 2 to 256 colours, got {colors}")
    with Image.open(io.BytesIO(png)) as image:
        out = io.BytesIO()
        image.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(out, format="PNG", optimize=True)
    return out.getvalue()


def write_html_report(
    path: Path,
    *,
    title: str,
    summary: str,
    table: pd.DataFrame,
    image: Path | None = None,
    sections: dict[str, str] | None = None,
    columns: Sequence[str] | None = None,
) -> Path:
    """A self-contained HTML report a laptop screen shows: title, summary, optional sections, the PNG
    inlined, then one row per feature with ``columns`` (the "why" first; default all), drifted rows
    first, and every column of the table behind a "details" fold.

    Args:
        path: The file to write (atomically).
        title, summary: Heading and the verdict sentence.
        table: One row per feature (a ``drifted`` column highlights rows).
        image: A PNG to inline.
        sections: Extra headed paragraphs.
        columns: The columns of the main table, in order; the others are only in the fold.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
        "font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}"
        "td.reason{max-width:36em;white-space:normal}tr.drifted{background:#fde2e1}"
        "img{max-width:100%;height:auto}details{margin-top:1.5em}.wide{overflow-x:auto}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p><b>{html.escape(summary)}</b></p>",
    ]
    for heading, text in (sections or {}).items():
        parts.append(f"<h2>{html.escape(heading)}</h2><p>{html.escape(text)}</p>")
    if image is not None and image.exists():
        parts.append(f"<img alt='distributions' src='{png_data_uri(image)}'>")
    drifted = table["drifted"].astype(bool) if "drifted" in table.columns else pd.Series(False, index=table.index)
    ordered = pd.concat([table[drifted], table[~drifted]])
    shown = [c for c in (columns or table.columns) if c in table.columns]
    parts.append(f"<h2>Per feature ({int(drifted.sum())} of {len(table)} drifted, listed first)</h2>")
    parts.append(_html_table(ordered[shown], drifted.reindex(ordered.index)))
    if len(shown) < len(table.columns):
        parts.append(f"<details><summary>All {len(table.columns)} columns</summary><div class='wide'>")
        parts.append(_html_table(ordered, drifted.reindex(ordered.index)))
        parts.append("</div></details>")
    parts.append("</body></html>")
    return files.write_atomic(path, "".join(parts))  # whole or not at all


def _html_table(frame: pd.DataFrame, drifted: pd.Series) -> str:
    parts = ["<table><tr>", *(f"<th>{html.escape(str(c))}</th>" for c in frame.columns), "</tr>"]
    for (_, row), flag in zip(frame.iterrows(), drifted):
        parts.append(f"<tr class='{'drifted' if flag else ''}'>")
        parts += [f"<td class='{html.escape(str(c))}'>{html.escape(_fmt(v))}</td>" for c, v in row.items()]
        parts.append("</tr>")
    parts.append("</table>")
    return "".join(parts)


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.4g}"
    return str(value)


def plot_metric_history(
    metrics: pd.DataFrame, shadow: pd.DataFrame, path: Path, *, metric: str, floor: float | None, title: str,
    last: int = 40,
) -> Path:
    """The champion's metric batch by batch (95% intervals; label-free estimates hollow), the floor,
    and each challenger's shadow metric beside it.

    Args:
        metrics: Rows of ``production_metrics`` (batch_id, champion_version, batch_metric, ci_low,
            ci_high, estimated_metric).
        shadow: Rows of ``shadow_scores`` (may be empty).
        path: PNG to write (folders are created).
        metric: The metric's name (axis label).
        floor: The metric floor, drawn as a line (None: none).
        title: Figure title.
        last: How many of the newest batches to show.

    Returns:
        The PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    metrics = metrics.sort_values("batch_id").tail(last).reset_index(drop=True)
    x_of = {b: i for i, b in enumerate(metrics["batch_id"])}
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * len(metrics) + 3), 3.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    versions = [v for v in dict.fromkeys(metrics["champion_version"].dropna().astype(str))]
    for k, version in enumerate(versions):
        colour = colours[k % len(colours)]
        rows = metrics[metrics["champion_version"].astype(str) == version]
        measured = rows[rows["batch_metric"].notna()]
        if not measured.empty:
            x = measured["batch_id"].map(x_of).to_numpy(float)
            y = measured["batch_metric"].to_numpy(float)
            low = (y - measured["ci_low"].fillna(measured["batch_metric"]).to_numpy(float)).clip(min=0)
            high = (measured["ci_high"].fillna(measured["batch_metric"]).to_numpy(float) - y).clip(min=0)
            ax.errorbar(x, y, yerr=[low, high], fmt="o-", color=colour, capsize=3, label=f"champion v{version}")
        estimated = rows[rows["batch_metric"].isna() & rows["estimated_metric"].notna()]
        if not estimated.empty:
            ax.plot(estimated["batch_id"].map(x_of), estimated["estimated_metric"], "o", mfc="none", color=colour,
                    label=f"champion v{version}, estimated (no labels)")
    if not shadow.empty:
        shown = shadow[shadow["batch_id"].isin(x_of)]
        for k, version in enumerate(dict.fromkeys(shown["challenger_version"].astype(str))):
            colour = colours[(len(versions) + k) % len(colours)]
            rows = shown[(shown["challenger_version"].astype(str) == version)]
            measured = rows[rows["labelled"].astype(bool) & rows["challenger_metric"].notna()]
            if not measured.empty:
                x = measured["batch_id"].map(x_of).to_numpy(float) + 0.15
                y = measured["challenger_metric"].to_numpy(float)
                low = (y - measured["challenger_ci_low"].fillna(measured["challenger_metric"]).to_numpy(float)).clip(min=0)
                high = (measured["challenger_ci_high"].fillna(measured["challenger_metric"]).to_numpy(float) - y).clip(min=0)
                ax.errorbar(x, y, yerr=[low, high], fmt="s--", color=colour, capsize=3,
                            label=f"challenger v{version} (shadow)")
            estimated = rows[~rows["labelled"].astype(bool) & rows["challenger_estimated_metric"].notna()]
            if not estimated.empty:
                ax.plot(estimated["batch_id"].map(x_of).to_numpy(float) + 0.15, estimated["challenger_estimated_metric"],
                        "s", mfc="none", color=colour, label=f"challenger v{version}, estimated (shadow)")
    if floor is not None:
        ax.axhline(floor, color="grey", linestyle=":", label=f"floor {floor:g}")
    ax.set_xticks(range(len(metrics)), list(metrics["batch_id"]), rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    rendered = io.BytesIO()
    fig.savefig(rendered, format=Path(path).suffix.lstrip(".") or "png", dpi=90)
    plt.close(fig)
    return files.write_atomic(Path(path), rendered.getvalue())  # whole or not at all


def plot_retrain_costs(retrains: pd.DataFrame, path: Path, *, title: str, period: str = "W") -> Path:
    """Fit seconds of the retrains per period, stacked by trigger.

    Args:
        retrains: Rows with ``started_at`` (UTC), ``trigger`` and ``fit_seconds``.
        path: PNG to write (folders are created).
        title: Figure title.
        period: Pandas period alias (``W``: weeks).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    frame = retrains.copy()
    started = pd.to_datetime(frame["started_at"], utc=True).dt.tz_localize(None)
    frame["period"] = started.dt.to_period(period).dt.start_time.dt.strftime("%Y-%m-%d")
    table = frame.pivot_table(index="period", columns="trigger", values="fit_seconds", aggfunc="sum", fill_value=0.0)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(table) + 3), 3.2))
    bottom = np.zeros(len(table))
    for trigger in table.columns:
        ax.bar(table.index, table[trigger].to_numpy(float), bottom=bottom, label=str(trigger))
        bottom += table[trigger].to_numpy(float)
    ax.set_ylabel("fit seconds")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
