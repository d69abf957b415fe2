"""Helpers that turn results into metadata a person reads in the Dagster UI. They return plain
Markdown (wrap it in ``dg.MetadataValue.md``), so ``core`` modules may use them without Dagster."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Sequence

import pandas as pd


MAX_INLINE_PNG_BYTES = 150_000
"""Largest PNG :func:`png_markdown` inlines. Metadata is stored in the event log with every
materialization and sent to the browser with the asset's page, so a picture must stay small; the
plots of ``core.report`` take 3–45 KB (the UI itself showed a 4 MB one)."""


def inert(text: str) -> str:
    """Text that came from a landed file, made inert for the UI's Markdown: HTML tags show as text
    (``&lt;script&gt;``) and link/image syntax as brackets, so a cell like ``![x](http://tracker/p.png)``
    is read, not fetched. Backticks, underscores and emphasis are left alone (they only change looks)."""
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("[", "\\[").replace("]", "\\]"))


def _cell(value: Any, width: int = 60) -> str:
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    text = inert(text).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def markdown_table(frame: pd.DataFrame | Sequence[dict], columns: Sequence[str] | None = None, *,
                   width: int = 60) -> str:
    """A Markdown table of a frame (or a list of dicts), cells escaped and cut at ``width`` characters
    (widen it for a column of sentences a person must read whole)."""
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(list(frame))
    if columns is not None:
        frame = frame[list(columns)]
    if frame.empty:
        return "_(none)_"
    header = "| " + " | ".join(_cell(c, width) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(v, width) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def png_markdown(image: Path | str | bytes, alt: str, *, max_bytes: int = MAX_INLINE_PNG_BYTES) -> str:
    """A PNG as Markdown that the Dagster UI shows as a picture, not as a file path.

    The PNG travels inside the metadata as a ``data:`` URI in a Markdown image
    (``![alt](data:image/png;base64,...)``): the UI's Markdown renderer keeps ``data:`` image
    sources (its sanitizer allows them; a raw HTML ``<img>`` is stripped) and nothing needs to
    serve the file. Markdown over 1,000 characters, as every picture is, shows in the metadata
    table as a "[Show Markdown]" link that opens the picture in a dialog. Keep the PNG small
    (``core.report.plot_distributions`` saves ~900 px wide, 80 dpi, a 64-colour palette) and keep a
    ``MetadataValue.path`` to the file beside it.

    Args:
        image: A PNG file or its bytes.
        alt: What the picture shows, in words (the image's alt text).
        max_bytes: Largest PNG accepted.

    Returns:
        One Markdown image holding the whole PNG: put it in ``dg.MetadataValue.md``, alone or
        after a line of text.

    Raises:
        ValueError: If ``image`` is not a PNG or is larger than ``max_bytes``.

    Example:
        ``metadata["metric_plot"] = dg.MetadataValue.md(png_markdown(plot_path, "ROC AUC per batch"))``
    """
    size = len(image) if isinstance(image, bytes) else Path(image).stat().st_size
    if size > max_bytes:
        where = "the PNG given" if isinstance(image, bytes) else str(image)
        raise ValueError(
            f"{where} has {size:,} bytes, more than the {max_bytes:,} that metadata may inline; "
            "save it smaller (lower dpi, fewer panels, a palette) or pass a larger max_bytes"
        )
    text = " ".join(alt.split()).replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    return f"![{text}]({png_data_uri(image if isinstance(image, bytes) else Path(image))})"


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_data_uri(image: Path | bytes) -> str:
    """A PNG as a ``data:image/png;base64,...`` URI, for an ``<img>`` or a Markdown image.

    Args:
        image: A PNG file or its bytes.

    Returns:
        The data URI (about 4/3 of the PNG's size).

    Raises:
        ValueError: If the bytes are not a PNG.
    """
    png = image if isinstance(image, bytes) else Path(image).read_bytes()
    if not png.startswith(PNG_SIGNATURE):
        where = "the bytes given" if isinstance(image, bytes) else str(image)
        raise ValueError(f"{where} is not a PNG (no PNG signature); save the figure with format='png'")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
