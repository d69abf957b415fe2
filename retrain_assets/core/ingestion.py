"""One landed batch file: its name, fingerprint and rows, stored in the warehouse (raw_data's core).

A batch lands as ``<batch_id>.csv`` or ``<batch_id>.parquet``; CSV values are read as text, exactly
as written, with each row's number kept in ``_row``. A file is stored chunk by chunk, never held
whole (:func:`ingest_batch`); :func:`read_batch` reads one into a frame. A file that cannot be read
raises :class:`BatchReadError` naming the file, the line and what to do. Pure Python (no Dagster).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import duckdb
import pandas as pd

from retrain_assets.constants import BATCH_EXTENSIONS
from retrain_assets.core import files, storage
from retrain_assets.core.batch_reader import BatchReadError, no_rows, open_landed
from retrain_assets.core.columns import ROW_COLUMN
from retrain_assets.core.memory_budget import MemoryBudget
from retrain_assets.core.paths import batch_id_problem


_IGNORED_PREFIXES = (".", "~", "_")


_IGNORED_SUFFIXES = (".tmp", ".part", ".crdownload", ".swp", ".partial", ".filepart")


READY_SUFFIX = ".done"
"""``<batch_id>.csv.done`` beside ``<batch_id>.csv`` says the writer has finished (automation.ready_marker)."""


IGNORED_RULE = (
    "names starting with " + ", ".join(repr(p) for p in _IGNORED_PREFIXES) + " or ending in "
    + ", ".join(_IGNORED_SUFFIXES) + " are ignored as temporary files until renamed; "
    f"'{READY_SUFFIX}' files are ready markers"
)
"""The ignore rule in words, for the landing sensor's skip message."""


def is_ignored_name(name: str) -> bool:
    """True for hidden, temporary and in-progress files, which the platform leaves alone."""
    return name.startswith(_IGNORED_PREFIXES) or name.lower().endswith(_IGNORED_SUFFIXES)


def batch_id_of(path: Path) -> str:
    """The batch id a file stands for: its name without the extension."""
    return path.stem if path.suffix else path.name


def name_problem(path: Path) -> str | None:
    """Why a file's name cannot be a batch, or None if it can.

    Args:
        path: The landed file.

    Returns:
        A sentence naming the file and the fix, or None.
    """
    suffix = path.suffix.lower()
    if suffix not in BATCH_EXTENSIONS:
        shown = f"extension {path.suffix!r}" if path.suffix else "no extension"
        return (
            f"file {path.name!r} has {shown}; batches must land as <batch_id>.csv or <batch_id>.parquet"
        )
    if path.suffix != suffix:
        return f"file {path.name!r}: write the extension in lower case ({suffix})"
    problem = batch_id_problem(batch_id_of(path))
    return f"file {path.name!r}: {problem}" if problem else None


def fingerprint(path: Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of the file's bytes, streamed (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_batch(path: Path, *, encoding: str = "utf-8", delimiter: str = ",", check_name: bool = True) -> pd.DataFrame:
    """Read a landed batch exactly as it arrived, whole, into one frame.

    CSV values are kept as text (``None`` for empty cells and the usual missing markers) so that
    nothing is lost or silently coerced before validation; Parquet keeps its own types. A column
    ``_row`` holds the 1-based data row number used in every message about a row. raw_data stores a
    file without holding it whole (:func:`ingest_batch`); both read it with the same reader
    (:mod:`retrain_assets.core.batch_reader`).

    Args:
        path: A ``.csv`` or ``.parquet`` file.
        encoding: Text encoding of CSV files.
        delimiter: CSV field separator.
        check_name: Refuse a name that cannot be a batch (off for a replacement file kept under
            another name; its extension still says how it is read).

    Returns:
        The batch with a leading ``_row`` column.

    Raises:
        BatchReadError: the file is empty, has no data rows, is not valid text in ``encoding``,
            is not a parseable CSV/Parquet file, or has blank/duplicated column names.
    """
    problem = name_problem(path) if check_name else None
    if problem:
        raise BatchReadError(problem)
    return open_landed(path, encoding=encoding, delimiter=delimiter).read_frame()


def ingest_batch(
    conn: duckdb.DuckDBPyConnection,
    path: Path,
    record: storage.IngestionRecord,
    *,
    encoding: str = "utf-8",
    delimiter: str = ",",
    memory_limit_mb: int,
    chunk_rows: int | None = None,
    check_name: bool = True,
) -> storage.IngestionRecord:
    """Store a landed batch file in the warehouse as it arrived, never holding it whole (raw_data's core).

    A Parquet file is read by DuckDB itself (``read_parquet``, within its ``memory_limit``, spilling
    beyond it); a CSV file is checked in blocks, then read by pandas ``chunk_rows`` rows at a time as
    text and appended. Either way the raw table and the ingestion record are written in one
    transaction: a problem found anywhere in the file undoes everything and raises.

    Args:
        conn: The warehouse.
        path: A ``.csv`` or ``.parquet`` file.
        record: What is known of the file; its ``rows`` and ``columns`` are counted here.
        encoding: Text encoding of CSV files.
        delimiter: CSV field separator.
        memory_limit_mb: ``storage.memory_limit_mb``: sets DuckDB's memory_limit and the CSV chunk size.
        chunk_rows: CSV rows per chunk (default: from ``memory_limit_mb``).
        check_name: As for :func:`read_batch`.

    Returns:
        The record as logged, with rows and columns.

    Raises:
        BatchReadError: as :func:`read_batch`, for a problem anywhere in the file.
    """
    problem = name_problem(path) if check_name else None
    if problem:
        raise BatchReadError(problem)
    landed = open_landed(path, encoding=encoding, delimiter=delimiter)
    budget = MemoryBudget(memory_limit_mb)
    budget.apply(conn)
    rows_per_chunk = chunk_rows or budget.chunk_rows(len(landed.columns))
    quoted = [storage.quote_identifier(c) for c in landed.columns]

    def fill(table: str) -> None:
        if landed.format == "parquet" and _PARQUET_ROW_NUMBER not in landed.columns:
            try:
                types = dict(conn.execute("SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet(?))",
                                          [str(path)]).fetchall())
                selected = [f"{q}::TIMESTAMPTZ AS {q}" if types.get(c) == "TIMESTAMPTZ_NS" else q
                            for c, q in zip(landed.columns, quoted)]  # as pandas would store them (and read them back)
                conn.execute(
                    f"CREATE OR REPLACE TABLE {table} AS SELECT {_PARQUET_ROW_NUMBER} + 1 AS {ROW_COLUMN}, "
                    f"{', '.join(selected)} FROM read_parquet(?, {_PARQUET_ROW_NUMBER} = true)", [str(path)])
            except (duckdb.InvalidInputException, duckdb.IOException) as error:
                if files.disk_full(error):
                    raise
                raise BatchReadError(f"file {path.name!r} is not a readable Parquet file: {error}") from None
            return
        if landed.format == "parquet":  # a column named like DuckDB's row number: read with pyarrow instead
            chunks = _parquet_chunks(path, landed.columns, rows_per_chunk)
            conn.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT 1::BIGINT AS {ROW_COLUMN}, {', '.join(quoted)} "
                         "FROM read_parquet(?) LIMIT 0", [str(path)])
        else:
            chunks = landed.csv_chunks(rows_per_chunk)
            conn.execute(f"CREATE OR REPLACE TABLE {table} ({ROW_COLUMN} BIGINT, "
                         + ", ".join(f"{q} VARCHAR" for q in quoted) + ")")
        start = 1
        for chunk in chunks:
            chunk.insert(0, ROW_COLUMN, range(start, start + len(chunk)))
            start += len(chunk)
            incoming_raw = chunk  # noqa: F841 - read by name (storage.append_valid says why, not register())
            conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming_raw")
        if start == 1:
            raise no_rows(landed)

    return storage.write_raw_stream(conn, record, fill)


_PARQUET_ROW_NUMBER = "file_row_number"
"""The column DuckDB's Parquet reader adds with each row's position in the file."""


def _parquet_chunks(path: Path, columns: tuple[str, ...], rows: int) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=list(columns)):
            yield batch.to_pandas()
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as error:
        raise BatchReadError(f"file {path.name!r} is not a readable Parquet file: {error}") from None


def batch_preview(conn: duckdb.DuckDBPyConnection, batch_id: str, rows: int = 5) -> pd.DataFrame:
    """The first rows of a stored batch (for raw_data's metadata)."""
    return next(storage.raw_chunks(conn, batch_id, rows))
