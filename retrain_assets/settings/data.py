"""Config sections about the data: the dataset, the schema hints, validation limits, where state is
stored and the MLflow store."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from retrain_assets.core.memory_budget import MIN_LIMIT_MB
from retrain_assets.settings.base import Section


class DatasetSettings(Section):
    """What the user's data is and where it lands."""

    name: str = Field(description="Dataset name; also the MLflow registered model name unless model.name is set.")
    landing_dir: Path = Field(description="Folder where batches land as <batch_id>.csv or <batch_id>.parquet.")
    target: str = Field(description="Label column; a batch without it is treated as unlabelled.")
    task: Literal["classification", "regression"] = Field(description="Learning task.")
    time_column: str | None = Field(default=None, description="Optional event-time column, parsed as a timestamp.")
    encoding: str = Field(default="utf-8", description="Text encoding of CSV batches.")
    csv_delimiter: str = Field(default=",", min_length=1, max_length=1, description="CSV field separator.")

    @field_validator("name")
    @classmethod
    def _name_is_identifier_like(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
            raise ValueError(
                "must start with a letter or digit and contain only letters, digits, '_', '.', '-' "
                f"(got {value!r})"
            )
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r} (e.g. 'utf-8', 'latin-1')") from None
        return value


class Range(Section):
    """An inclusive expected range of a numeric column; either bound may be omitted."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class SchemaSettings(Section):
    """Optional schema hints; anything not given is inferred from the first accepted batch."""

    categorical: list[str] = Field(default_factory=list, description="Columns to treat as categorical.")
    numeric: list[str] = Field(default_factory=list, description="Columns to treat as numeric.")
    id_columns: list[str] = Field(
        default_factory=list,
        description="Identifier columns: must be present, non-null and unique in a batch; never used as features.",
    )
    ignore_columns: list[str] = Field(
        default_factory=list, description="Columns dropped on arrival (allowed to be present or absent)."
    )
    required: list[str] = Field(
        default_factory=list, description="Feature columns that must not contain nulls (each null row is quarantined)."
    )
    ranges: dict[str, Range] = Field(default_factory=dict, description="Expected inclusive range per numeric column.")
    categories: dict[str, list[str]] = Field(
        default_factory=dict, description="Allowed values per categorical column; others are quarantined."
    )
    classes: list[int | str] | None = Field(
        default=None, description="Allowed target classes (classification); inferred from the first labelled batch if omitted."
    )
    max_null_fraction: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Largest share of nulls a feature may have in one batch before the batch fails (a NaN flood).",
    )
    allow_extra_columns: bool = Field(
        default=False, description="If true, unexpected columns are dropped with a warning instead of failing the batch."
    )
    max_classes: int = Field(
        default=50, ge=2, description="A classification target with more distinct values than this is refused as the wrong kind."
    )

    @model_validator(mode="after")
    def _consistent(self) -> SchemaSettings:
        both = sorted(set(self.categorical) & set(self.numeric))
        if both:
            raise ValueError(f"columns listed as both categorical and numeric: {both}")
        for column in self.ranges:
            if column in self.categorical:
                raise ValueError(f"ranges.{column}: a range is given for categorical column {column!r}")
        for column in self.categories:
            if column in self.numeric:
                raise ValueError(f"categories.{column}: categories are given for numeric column {column!r}")
        return self


class ValidationSettings(Section):
    """When a batch is held back."""

    max_invalid_fraction: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="A batch whose share of quarantined rows exceeds this fails the check on validated_data: the batch is held back.",
    )
    examples_per_expectation: int = Field(
        default=5, ge=1, le=100, description="How many failing values to show per expectation."
    )
    range_margin: float = Field(
        default=3.0, gt=0, description=(
            "Numeric columns without schema.ranges: a value further than this many times the reference batch's "
            "0.5–99.5% span outside that span is quarantined as implausible (1e308, a unit change)."
        ),
    )
    future_tolerance_hours: float = Field(
        default=24.0, ge=0, description="Event times later than now plus this are quarantined as in the future."
    )
    max_cell_chars: int = Field(
        default=1000, ge=1, description="Longest text value accepted in a categorical or id column; longer rows are quarantined."
    )


class StorageSettings(Section):
    """Where the platform keeps its state."""

    root: Path = Field(description="Folder for the DuckDB file, quarantine, rejected files, reports and the default MLflow store.")
    duckdb_file: str = Field(default="warehouse.duckdb", description="DuckDB file name under root.")
    lock_wait_seconds: float = Field(
        default=100.0, ge=0, le=3600,
        description="How long a run waits for the DuckDB file while another process holds it (a notebook, the "
        "duckdb CLI) before it fails naming that process; the batch is then retried later. 0: fail at once.",
    )
    memory_limit_mb: int = Field(
        default=2048, ge=MIN_LIMIT_MB,
        description="Peak memory in MB that storing and validating one batch (raw_data, validated_data) may use: the "
        "batch is streamed through DuckDB in chunks sized to stay under it (DuckDB's own memory_limit is set from it "
        "and it spills to disk beyond), so a batch larger than memory is still taken in. More is faster (fewer chunks).",
    )


class MlflowSettings(Section):
    """MLflow tracking and registry."""

    tracking_uri: str | None = Field(
        default=None, description="Default: a SQLite store under storage.root; http://host:port for a tracking server."
    )
    experiment: str | None = Field(default=None, description="Experiment name; default: the dataset name.")
