"""Reading one landed batch file: its name, fingerprint and rows (raw_data's core).

A batch lands as ``<batch_id>.csv`` or ``<batch_id>.parquet``; CSV values are read as text, exactly
as written, with each row's line number kept in ``_row``. A file that cannot be read raises
:class:`BatchReadError` naming the file, the line and what to do. Pure Python (no Dagster).
"""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import pandas as pd

from retrain_assets.constants import BATCH_EXTENSIONS
from retrain_assets.core.columns import ROW_COLUMN
from retrain_assets.core.paths import batch_id_problem
from retrain_assets.core.sniff import sniff_problem


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


class BatchReadError(ValueError):
    """A landed file cannot be read as a batch; the message names the file and what is wrong."""


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


def _line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def read_batch(path: Path, *, encoding: str = "utf-8", delimiter: str = ",", check_name: bool = True) -> pd.DataFrame:
    """Read a landed batch exactly as it arrived.

    CSV values are kept as text (``None`` for empty cells and the usual missing markers) so that
    nothing is lost or silently coerced before validation; Parquet keeps its own types. A column
    ``_row`` holds the 1-based data row number used in every message about a row.

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
    name = path.name
    problem = name_problem(path) if check_name else None
    if problem:
        raise BatchReadError(problem)
    size = path.stat().st_size
    if size == 0:
        raise BatchReadError(f"file {name!r} is empty (0 bytes)")
    sniffed = sniff_problem(path, encoding=encoding, delimiter=delimiter)
    if sniffed:
        raise BatchReadError(sniffed)
    if path.suffix == ".csv":
        frame = _read_csv(path, encoding=encoding, delimiter=delimiter)
    else:
        frame = _read_parquet(path)
    columns = [str(c) for c in frame.columns]
    blank = [i + 1 for i, c in enumerate(columns) if not c.strip() or c.startswith("Unnamed: ")]
    if blank:
        raise BatchReadError(f"file {name!r}: column(s) at position {blank} have no name in the header")
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise BatchReadError(f"file {name!r}: the header repeats column name(s) {duplicated}")
    if ROW_COLUMN in columns:
        raise BatchReadError(f"file {name!r}: column name {ROW_COLUMN!r} is reserved by the platform; rename it")
    if len(frame) == 0:
        raise BatchReadError(f"file {name!r} has a header ({len(columns)} columns) but no data rows")
    frame.columns = columns
    frame.insert(0, ROW_COLUMN, range(1, len(frame) + 1))
    return frame


def _read_csv(path: Path, *, encoding: str, delimiter: str) -> pd.DataFrame:
    name = path.name
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        line = _line_of_offset(data, error.start)
        snippet = data[max(0, error.start - 10) : error.start + 10]
        raise BatchReadError(
            f"file {name!r} is not valid {encoding} text: byte 0x{data[error.start]:02x} at offset "
            f"{error.start} (line {line}, near {snippet!r}); save it as {encoding} or set dataset.encoding"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise BatchReadError(f"file {name!r} holds only whitespace, no header and no rows")
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise BatchReadError(f"file {name!r} contains NUL bytes (line {line}); it is binary, not CSV text")
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            dtype=str,
            keep_default_na=True,
            skipinitialspace=False,
            on_bad_lines="error",
            engine="c",
        )
    except pd.errors.ParserError as error:
        raise BatchReadError(f"file {name!r} is not a well-formed CSV: {error}") from None
    except pd.errors.EmptyDataError:
        raise BatchReadError(f"file {name!r} has no header and no rows") from None
    except csv.Error as error:  # pragma: no cover - the C engine raises ParserError instead
        raise BatchReadError(f"file {name!r} is not a well-formed CSV: {error}") from None
    # pandas renames a repeated header name ("a", "a" -> "a", "a.1"), so look at the header as written.
    try:
        header = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
    except csv.Error as error:
        raise BatchReadError(f"file {name!r} has an unreadable header: {error}") from None
    repeated = sorted({c for c in header if c.strip() and header.count(c) > 1})
    if repeated:
        raise BatchReadError(f"file {name!r}: the header repeats column name(s) {repeated}")
    short = _short_row(text, delimiter, len(header))
    if short is not None:
        line, fields = short
        raise BatchReadError(
            f"file {name!r}: line {line} has {fields} field(s) where the header has {len(header)}: the row was cut "
            "short or a delimiter is missing (pandas would fill the gap with empty values); fix the row and land the "
            "file again"
        )
    return frame.astype(object).where(frame.notna(), None)


def _short_row(text: str, delimiter: str, width: int) -> tuple[int, int] | None:
    """(line, fields) of the first data row with fewer fields than the header (blank lines aside), or None."""
    if csv.field_size_limit() < len(text):  # one long cell is validation's to judge (max_cell_chars), not the reader's
        csv.field_size_limit(min(len(text), 2**31 - 1))
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    next(reader, None)
    for row in reader:
        if row and len(row) < width and any(cell.strip() for cell in row):
            return reader.line_num, len(row)
    return None


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as error:
        raise BatchReadError(f"file {path.name!r} is not a readable Parquet file: {error}") from None
    return table.to_pandas()
