"""Helpers that turn results into metadata a person reads in the Dagster UI."""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd


def _cell(value: Any, width: int = 60) -> str:
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def markdown_table(frame: pd.DataFrame | Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A Markdown table of a frame (or a list of dicts), cells escaped and shortened."""
    if not isinstance(frame, pd.DataFrame):
        frame = pd.DataFrame(list(frame))
    if columns is not None:
        frame = frame[list(columns)]
    if frame.empty:
        return "_(none)_"
    header = "| " + " | ".join(_cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])
