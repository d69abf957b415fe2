"""Reading a landed batch file as it arrived, whole or chunk by chunk: the one reader behind raw_data.

CSV values are read as text (``None`` for empty cells and the usual missing markers) so that nothing
is lost or silently coerced before validation; Parquet keeps its own types. The file is checked in
blocks before its rows are read (encoding, NUL bytes, header), so memory stays bounded whatever its
size; a problem raises :class:`BatchReadError` naming the file, the line and what to do. Several
problems in one file are reported in the order they are found. Pure Python (no Dagster).
"""

from __future__ import annotations

import codecs
import csv
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

import pandas as pd

from retrain_assets.core.columns import ROW_COLUMN

BLOCK_BYTES = 1 << 20


class BatchReadError(ValueError):
    """A landed file cannot be read as a batch; the message names the file and what is wrong."""


@dataclass(frozen=True)
class LandedFile:
    """A landed file whose bytes and header were checked; its rows are read by :meth:`csv_chunks`
    (CSV) or by DuckDB's Parquet reader (:func:`retrain_assets.core.ingestion.ingest_batch`).

    Attributes:
        path: The file.
        format: ``csv`` or ``parquet``.
        columns: Its column names, in order (a Parquet file's stored pandas index left out).
        encoding: CSV text encoding.
        delimiter: CSV field separator.
        rows: Data rows when the file says (Parquet), else None.
    """

    path: Path
    format: str
    columns: tuple[str, ...]
    encoding: str = "utf-8"
    delimiter: str = ","
    rows: int | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @contextmanager
    def _text(self) -> Iterator[IO[str]]:
        with open(self.path, encoding=self.encoding, newline="") as handle:
            if handle.read(1) != "\ufeff":
                handle.seek(0)
            yield handle

    def csv_chunks(self, chunk_rows: int | None) -> Iterator[pd.DataFrame]:
        """The CSV's rows as text frames of at most ``chunk_rows`` rows (all in one when None), in file
        order, without ``_row``. After the last chunk, a row cut short raises.

        Raises:
            BatchReadError: a malformed row (pandas' message, with its line), or a short row.
        """
        options = dict(sep=self.delimiter, dtype=str, keep_default_na=True, skipinitialspace=False,
                       on_bad_lines="error", engine="c")
        with self._text() as handle:
            try:
                if chunk_rows is None:
                    yield _as_text(pd.read_csv(handle, **options))
                else:
                    with pd.read_csv(handle, chunksize=chunk_rows, **options) as reader:
                        for chunk in reader:
                            yield _as_text(chunk)
            except pd.errors.ParserError as error:
                raise BatchReadError(f"file {self.name!r} is not a well-formed CSV: {error}") from None
            except csv.Error as error:  # pragma: no cover - the C engine raises ParserError instead
                raise BatchReadError(f"file {self.name!r} is not a well-formed CSV: {error}") from None
        short = self._short_row()
        if short is not None:
            line, fields = short
            raise BatchReadError(
                f"file {self.name!r}: line {line} has {fields} field(s) where the header has {len(self.columns)}: the "
                "row was cut short or a delimiter is missing (pandas would fill the gap with empty values); fix the row "
                "and land the file again"
            )

    def _short_row(self) -> tuple[int, int] | None:
        """(line, fields) of the first data row with fewer fields than the header (blank lines aside), or None."""
        size = self.path.stat().st_size
        if csv.field_size_limit() < size:  # one long cell is validation's to judge (max_cell_chars), not the reader's
            csv.field_size_limit(min(size, 2**31 - 1))
        width = len(self.columns)
        with self._text() as handle:
            reader = csv.reader(handle, delimiter=self.delimiter)
            next(reader, None)
            for row in reader:
                if row and len(row) < width and any(cell.strip() for cell in row):
                    return reader.line_num, len(row)
        return None

    def read_frame(self) -> pd.DataFrame:
        """The whole file as one frame with a leading ``_row`` (see :func:`retrain_assets.core.ingestion.read_batch`)."""
        frame = list(self.csv_chunks(None))[0] if self.format == "csv" else _read_parquet(self.path)
        if len(frame) == 0:
            raise no_rows(self)
        frame.columns = list(self.columns)
        frame.insert(0, ROW_COLUMN, range(1, len(frame) + 1))
        return frame


def no_rows(landed: LandedFile) -> BatchReadError:
    """The error for a file with a header and no data rows."""
    return BatchReadError(f"file {landed.name!r} has a header ({len(landed.columns)} columns) but no data rows")


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    frame.columns = [str(c) for c in frame.columns]
    return frame.astype(object).where(frame.notna(), None)


def open_landed(path: Path, *, encoding: str = "utf-8", delimiter: str = ",") -> LandedFile:
    """Check a landed ``.csv`` or ``.parquet`` file's bytes and header, without reading its rows.

    Args:
        path: The file (its name already judged).
        encoding: Text encoding of CSV files.
        delimiter: CSV field separator.

    Returns:
        The checked file.

    Raises:
        BatchReadError: the file is empty, is not valid text in ``encoding``, holds NUL bytes or only
            white space, is not a parseable CSV/Parquet file, or has blank, repeated or reserved
            column names (a Parquet file also: no rows).
    """
    from retrain_assets.core.sniff import sniff_problem

    name = path.name
    if path.stat().st_size == 0:
        raise BatchReadError(f"file {name!r} is empty (0 bytes)")
    sniffed = sniff_problem(path, encoding=encoding, delimiter=delimiter)
    if sniffed:
        raise BatchReadError(sniffed)
    if path.suffix == ".csv":  # the name says how a file is read (a wrong case is refused by its name)
        landed = LandedFile(path, "csv", _csv_header(path, encoding, delimiter), encoding, delimiter)
    else:
        columns, rows = _parquet_header(path)
        landed = LandedFile(path, "parquet", columns, rows=rows)
    _check_names(name, list(landed.columns))
    if landed.rows == 0:
        raise no_rows(landed)
    return landed


def _check_names(name: str, columns: list[str]) -> None:
    blank = [i + 1 for i, c in enumerate(columns) if not c.strip() or c.startswith("Unnamed: ")]
    if blank:
        raise BatchReadError(f"file {name!r}: column(s) at position {blank} have no name in the header")
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise BatchReadError(f"file {name!r}: the header repeats column name(s) {duplicated}")
    if ROW_COLUMN in columns:
        raise BatchReadError(f"file {name!r}: column name {ROW_COLUMN!r} is reserved by the platform; rename it")


def _scan_text(path: Path, encoding: str) -> None:
    """Decode the whole file block by block: the first byte that is not ``encoding`` text, then text
    that is only white space, then a NUL byte, each raise (in that order, as for a file read whole)."""
    name = path.name
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    fed = newlines = 0
    nul_line: int | None = None
    seen_text = first = False
    with open(path, "rb") as handle:
        while True:
            block = handle.read(BLOCK_BYTES)
            buffered = len(decoder.getstate()[0])
            try:
                text = decoder.decode(block, final=not block)
            except UnicodeDecodeError as error:
                _raise_decode_error(path, encoding, fed - buffered + error.start)
            fed += len(block)
            if not first and text:
                first = True
                text = text.removeprefix("\ufeff")
            if nul_line is None and "\x00" in text:
                nul_line = newlines + text.count("\n", 0, text.index("\x00")) + 1
            newlines += text.count("\n")
            seen_text = seen_text or bool(text.strip())
            if not block:
                break
    if not seen_text:
        raise BatchReadError(f"file {name!r} holds only whitespace, no header and no rows")
    if nul_line is not None:
        raise BatchReadError(f"file {name!r} contains NUL bytes (line {nul_line}); it is binary, not CSV text")


def _raise_decode_error(path: Path, encoding: str, offset: int) -> None:
    newlines = 0
    with open(path, "rb") as handle:
        read = 0
        while read < offset:
            block = handle.read(min(BLOCK_BYTES, offset - read))
            if not block:
                break
            newlines += block.count(b"\n")
            read += len(block)
        handle.seek(max(0, offset - 10))
        snippet = handle.read(offset - max(0, offset - 10) + 10)
        handle.seek(offset)
        byte = handle.read(1)
    raise BatchReadError(
        f"file {path.name!r} is not valid {encoding} text: byte 0x{byte[0]:02x} at offset {offset} (line "
        f"{newlines + 1}, near {snippet!r}); save it as {encoding} or set dataset.encoding"
    ) from None


def _csv_header(path: Path, encoding: str, delimiter: str) -> tuple[str, ...]:
    """The CSV's column names as pandas reads them, after the whole file was scanned as text."""
    name = path.name
    _scan_text(path, encoding)
    landed = LandedFile(path, "csv", (), encoding, delimiter)
    with landed._text() as handle:
        try:
            columns = [str(c) for c in pd.read_csv(handle, sep=delimiter, dtype=str, nrows=0, engine="c").columns]
        except pd.errors.ParserError as error:
            raise BatchReadError(f"file {name!r} is not a well-formed CSV: {error}") from None
        except pd.errors.EmptyDataError:
            raise BatchReadError(f"file {name!r} has no header and no rows") from None
    # pandas renames a repeated header name ("a", "a" -> "a", "a.1"), so look at the header as written.
    with landed._text() as handle:
        try:
            header = next(csv.reader(handle, delimiter=delimiter), [])
        except csv.Error as error:
            raise BatchReadError(f"file {name!r} has an unreadable header: {error}") from None
    repeated = sorted({c for c in header if c.strip() and header.count(c) > 1})
    if repeated:
        raise BatchReadError(f"file {name!r}: the header repeats column name(s) {repeated}")
    return tuple(columns)


def _parquet_header(path: Path) -> tuple[tuple[str, ...], int]:
    """A Parquet file's column names (its stored pandas index left out) and rows, from its footer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        rows = parquet.metadata.num_rows
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as error:
        raise BatchReadError(f"file {path.name!r} is not a readable Parquet file: {error}") from None
    index: set[str] = set()
    meta = (schema.metadata or {}).get(b"pandas")
    if meta:
        try:
            index = {c for c in json.loads(meta).get("index_columns", []) if isinstance(c, str)}
        except (ValueError, AttributeError):
            index = set()
    return tuple(str(c) for c in schema.names if c not in index), rows


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as error:
        raise BatchReadError(f"file {path.name!r} is not a readable Parquet file: {error}") from None
    return table.to_pandas()

