"""The stream a backtest replays: the seeded demo stream, or the files of a landing folder, as
batches in arrival order with the schema and validation the platform would apply."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from retrain_assets.core.columns import ROW_COLUMN
from retrain_assets.constants import BATCH_EXTENSIONS
from retrain_assets.core import demo_data, synthetic
from retrain_assets.core.demo_data import demo_batch, demo_plan, stream_batch_seed
from retrain_assets.core.ingestion import BatchReadError, batch_id_of, is_ignored_name, name_problem, read_batch
from retrain_assets.core.schema import DatasetSchema, normalise_labels, numeric_parse, with_classes
from retrain_assets.core.validation import validate_batch
from retrain_assets.settings import Settings


DEFAULT_BATCHES = demo_data.STREAM_BATCHES
DEFAULT_ROWS = 2000
DEFAULT_SEED = 7
DEFAULT_INITIAL = demo_data.STREAM_INITIAL
"""The first model learns from the first two batches and is judged on the third, for every policy."""


# --------------------------------------------------------------------------
# The stream
# --------------------------------------------------------------------------


@dataclass
class Batch:
    """One batch of the replayed stream.

    Attributes:
        batch_id: Its id (streams are replayed in list order).
        frame: Its validated rows (the target present; a missing target means an unlabelled row).
        labelled_rows: Rows with a target.
        note: What the batch carries (demo stream) or whether it is labelled (landing).
    """

    batch_id: str
    frame: pd.DataFrame
    labelled_rows: int
    note: str = ""

    @property
    def labelled(self) -> bool:
        """Whether any row has a label."""
        return self.labelled_rows > 0


def demo_stream(n_batches: int = DEFAULT_BATCHES, n_rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED,
                *, initial: int = DEFAULT_INITIAL) -> list[Batch]:
    """The seeded demo stream of :func:`demo_plan` (synthetic churn data, every batch labelled)."""
    return [
        Batch(spec.batch_id, frame, int(frame[synthetic.TARGET].notna().sum()), spec.note)
        for i, spec in enumerate(demo_plan(n_batches, initial=initial))
        for frame in [demo_batch(spec, n_rows, stream_batch_seed(seed, i))]
    ]


def _labels_as_validated(raw: pd.Series, schema: DatasetSchema) -> pd.Series:
    """The target parsed as validation parses it; unparseable or unknown labels become missing."""
    if schema.task == "regression":
        values = numeric_parse(raw)
        return values.mask(~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan)))
    labels = normalise_labels(raw)
    if schema.classes is not None:
        labels = labels.where(labels.isin(list(schema.classes)))
    return labels


def landing_stream(folder: Path, cfg: Settings) -> tuple[list[Batch], DatasetSchema | None, list[str]]:
    """The batches of a landing folder, in batch-id order, validated as the platform validates them.

    Each file is read with :func:`read_batch` and its features validated with
    :func:`validate_batch` against the config's schema (inferred from the first readable batch
    under the config's hints, as the platform does). Rows with a missing (or unparseable, or
    unknown-class) target count as unlabelled rather than being quarantined, so a partly
    labelled batch is replayed with the labels it has. Files that cannot be read and batches that
    fail validation are skipped and listed.

    Args:
        folder: The landing folder (``*.csv`` / ``*.parquet``; other files are ignored).
        cfg: The settings (dataset, schema hints, validation limit).

    Returns:
        (batches, the schema they were validated against, notes on skipped files).
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"landing folder {folder} does not exist")
    target = cfg.dataset.target
    paths = sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix in BATCH_EXTENSIONS and not is_ignored_name(p.name)),
        key=lambda p: (batch_id_of(p), p.suffix),
    )
    schema: DatasetSchema | None = None
    batches, skipped, seen = [], [], set()
    for path in paths:
        batch_id = batch_id_of(path)
        problem = name_problem(path)
        if problem or batch_id in seen:
            skipped.append(f"{path.name}: {problem or f'a second file for batch {batch_id}'}")
            continue
        try:
            raw = read_batch(path, encoding=cfg.dataset.encoding, delimiter=cfg.dataset.csv_delimiter)
        except BatchReadError as error:
            skipped.append(f"{path.name}: {error}")
            continue
        if schema is None:
            schema = cfg.schema_for(None, raw, batch_id)
        if schema.task == "classification" and schema.classes is None and target in raw.columns:
            schema = with_classes(schema, raw[target].tolist())
        labels = _labels_as_validated(raw[target], schema) if target in raw.columns else None
        report = validate_batch(
            raw.drop(columns=[target], errors="ignore"), schema, batch_id=batch_id,
            max_invalid_fraction=cfg.validation.max_invalid_fraction,
        )
        if not report.passed:
            skipped.append(f"{path.name}: {report.summary}")
            continue
        frame = report.valid
        if labels is not None:
            values = labels.set_axis(raw[ROW_COLUMN].to_numpy()).reindex(frame[ROW_COLUMN].to_numpy())
            if values.dropna().map(lambda v: isinstance(v, (int, float))).all():
                values = pd.to_numeric(values)  # NaN marks an unlabelled row
                if values.notna().all() and (values == values.round()).all():
                    values = values.astype("int64")
            frame[target] = values.to_numpy()
        labelled = int(frame[target].notna().sum()) if target in frame.columns else 0
        seen.add(batch_id)
        note = "labelled" if labelled == len(frame) else ("unlabelled" if not labelled else "partly labelled")
        batches.append(Batch(batch_id, frame, labelled, note))
    return batches, schema, skipped


# --------------------------------------------------------------------------
# Replay
# --------------------------------------------------------------------------


