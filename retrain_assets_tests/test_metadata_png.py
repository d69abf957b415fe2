"""png_markdown: a PNG as a Markdown image with a data: URI, which the Dagster UI shows as a
picture (the browser test opens one); bounded in size because metadata lives in the event log."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from retrain_assets.core.report import plot_distributions
from retrain_assets.core.markdown import png_data_uri
from retrain_assets.core.markdown import MAX_INLINE_PNG_BYTES, png_markdown
from retrain_assets.settings.retraining import DriftSettingsModel

IMAGE = re.compile(r"^!\[(?P<alt>(?:[^\]\\]|\\.)*)\]\(data:image/png;base64,(?P<data>[A-Za-z0-9+/]+=*)\)$")


def _png(width: int = 30, height: int = 20) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (76, 114, 176)).save(buffer, format="PNG")
    return buffer.getvalue()


def _decoded(markdown: str) -> tuple[str, Image.Image]:
    match = IMAGE.match(markdown)
    assert match, markdown[:120]
    return match["alt"], Image.open(io.BytesIO(base64.b64decode(match["data"], validate=True)))


@pytest.mark.parametrize("as_path", [False, True])
def test_a_png_becomes_one_markdown_image_with_its_exact_bytes(tmp_path: Path, as_path: bool):
    png = _png()
    source = tmp_path / "plot.png" if as_path else png
    if as_path:
        source.write_bytes(png)
    markdown = png_markdown(source, "ROC AUC per batch")
    alt, image = _decoded(markdown)
    assert alt == "ROC AUC per batch"
    assert (image.format, image.size) == ("PNG", (30, 20))
    assert markdown.endswith(png_data_uri(png) + ")") and base64.b64decode(png_data_uri(png).split(",", 1)[1]) == png


def test_alt_text_cannot_break_the_markdown():
    alt, _ = _decoded(png_markdown(_png(), "drift [3 of 7]\nfeatures \\ batch"))
    assert alt == "drift \\[3 of 7\\] features \\\\ batch"


def test_a_png_over_the_bound_is_refused_saying_what_to_do():
    png = _png()
    with pytest.raises(ValueError, match=rf"has {len(png)} bytes, more than the 50 that metadata may inline; save it smaller"):
        png_markdown(png, "too big", max_bytes=50)
    assert MAX_INLINE_PNG_BYTES <= 150_000


def test_what_is_not_a_png_is_refused(tmp_path: Path):
    jpeg = tmp_path / "plot.jpg"
    Image.new("RGB", (10, 10)).save(jpeg, format="JPEG")
    with pytest.raises(ValueError, match=r"plot\.jpg is not a PNG"):
        png_markdown(jpeg, "a JPEG")


def test_the_largest_drift_plot_the_settings_allow_fits_inline(tmp_path: Path):
    """drift.plot_features at its maximum, with long category names and 10k rows: still small."""
    constraints = DriftSettingsModel.model_fields["plot_features"].metadata
    limit = next(c.le for c in constraints if hasattr(c, "le"))
    rng = np.random.default_rng(7)
    categories = [f"a_rather_long_category_name_{k}" for k in range(40)]
    columns, features = {}, []
    for i in range(limit):
        name = f"feature_{i}"
        if i % 3 == 2:
            columns[name] = (rng.choice(categories, 10_000), rng.choice(categories, 10_000))
            features.append((name, "categorical"))
        else:
            columns[name] = (rng.normal(size=10_000), rng.normal(0.4, 1.3, size=10_000))
            features.append((name, "numeric"))
    reference = pd.DataFrame({name: pair[0] for name, pair in columns.items()})
    current = pd.DataFrame({name: pair[1] for name, pair in columns.items()})
    path = plot_distributions(reference, current, features, tmp_path / "plot.png", title="batch_0009 vs reference")
    size = path.stat().st_size
    _, image = _decoded(png_markdown(path, "all features"))
    assert size < MAX_INLINE_PNG_BYTES / 2, f"{limit} panels take {size:,} bytes"
    assert image.size[0] <= 1000, image.size  # rows of 3 panels: readable in the UI's dialog without scrolling sideways
