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
) -> Path:
    """A self-contained HTML report: title, summary, optional sections, the PNG inlined, the table."""
    path.parent.mkdir(parents=True, exist_ok=True)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:3px 6px}tr.drifted{background:#fde2e1}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p><b>{html.escape(summary)}</b></p>",
    ]
    for heading, text in (sections or {}).items():
        parts.append(f"<h2>{html.escape(heading)}</h2><p>{html.escape(text)}</p>")
    if image is not None and image.exists():
        parts.append(f"<img alt='distributions' src='{png_data_uri(image)}'>")
    parts.append("<h2>Per feature</h2><table><tr>")
    parts += [f"<th>{html.escape(str(c))}</th>" for c in table.columns]
    parts.append("</tr>")
    drifted = table["drifted"] if "drifted" in table.columns else pd.Series(False, index=table.index)
    for (_, row), flag in zip(table.iterrows(), drifted):
        parts.append(f"<tr class='{'drifted' if flag else ''}'>")
        parts += [f"<td>{html.escape(_fmt(v))}</td>" for v in row]
        parts.append("</tr>")
    parts.append("</table></body></html>")
    return files.write_atomic(path, "".join(parts))  # whole or not at all


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.4g}"
    return str(value)
