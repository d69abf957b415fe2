"""What a landed file really is, when that is not what its name says (one sniffing function for the read path).

Pure Python (no Dagster).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path

_MAGIC = (
    (b"\x1f\x8b", "a gzip-compressed file", "decompress it (gunzip) and land the CSV inside"),
    (b"PAR1", "a Parquet file", "name it <batch_id>.parquet"),
    (b"%PDF", "a PDF document", "export the data as CSV (or Parquet) instead"),
    (b"\xd0\xcf\x11\xe0", "an old Excel (.xls) or other Office file", "save the sheet as CSV (UTF-8) instead"),
    (b"\xff\xfe", "UTF-16 text (byte-order mark FF FE)", "save it as UTF-8, or set dataset.encoding: utf-16"),
    (b"\xfe\xff", "UTF-16 text (byte-order mark FE FF)", "save it as UTF-8, or set dataset.encoding: utf-16"),
)
_CANDIDATE_DELIMITERS = (",", ";", "\t", "|")
_SEP_HINT = re.compile(r'^"?sep=(.?)"?\s*$', re.IGNORECASE)
_DECIMAL_COMMA = re.compile(r"(?:^|[;\t|])-?\d+,\d+(?=$|[;\t|])")


def _shown(delimiter: str) -> str:
    return "tab ('\\t')" if delimiter == "\t" else repr(delimiter)


def sniff_problem(path: Path, *, encoding: str = "utf-8", delimiter: str = ",") -> str | None:
    """What a landed file really is when that is not what its name says, or None.

    Looks at the first 64 KiB (and the last bytes of a Parquet file): compressed files, archives
    (a zip, or an Excel ``.xlsx`` workbook), PDF and Parquet files named ``.csv``; CSV text named
    ``.parquet``; and CSV text separated by another delimiter than ``delimiter`` (counted on the
    header line, confirmed on the first data line), with decimal commas, or led by an Excel
    ``sep=`` line. The one place the read path sniffs content.

    Args:
        path: The landed file (``.csv`` or ``.parquet``).
        encoding: The configured text encoding (dataset.encoding).
        delimiter: The configured CSV field separator (dataset.csv_delimiter).

    Returns:
        A sentence naming the file, what it is and what to do, or None when it looks like its name.
    """
    name = path.name
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - 4))
        tail = handle.read(4)
    if head.startswith(b"PK\x03\x04"):
        if b"[Content_Types].xml" in head or b"xl/" in head:
            return (f"file {name!r} is an Excel workbook (.xlsx, a zip archive), not CSV text: save the sheet as "
                    "CSV (UTF-8) or Parquet and land that")
        return f"file {name!r} is a zip archive, not CSV text: unzip it and land the CSV or Parquet file inside"
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        if head.startswith(b"PAR1"):
            if tail != b"PAR1":
                return (f"file {name!r} is not a readable Parquet file: it is cut short (no Parquet footer at its end), "
                        "probably copied while still being written; land the complete file")
            return None
        for magic, what, todo in _MAGIC:
            if head.startswith(magic) and magic != b"PAR1":
                return f"file {name!r} is {what}, not a Parquet file: {todo} (as .csv) or convert it to Parquet"
        if head and b"\x00" not in head[:4096]:
            try:
                head[:4096].decode(encoding)
            except UnicodeDecodeError:
                return None
            return (f"file {name!r} holds CSV text, not Parquet: name it <batch_id>.csv, or convert it to Parquet")
        return None
    for magic, what, todo in _MAGIC:
        if head.startswith(magic):
            if magic in (b"\xff\xfe", b"\xfe\xff") and encoding.lower().replace("-", "").startswith("utf16"):
                return None
            return f"file {name!r} is {what}, not CSV text: {todo}"
    try:
        text = head.decode(encoding, errors="ignore" if len(head) == 1 << 16 else "strict")
    except UnicodeDecodeError:
        return None  # the reader names the byte and the line
    text = text.lstrip("\ufeff")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    hint = _SEP_HINT.match(lines[0])
    if hint:
        sep = hint.group(1) or delimiter
        todo = "remove that first line" + (
            "" if sep == delimiter else f" and set dataset.csv_delimiter: {_shown(sep)}"
        )
        return (f"file {name!r} starts with an Excel 'sep={sep}' line (delimiter {_shown(sep)}) before its header: "
                f"{todo} (export as 'CSV UTF-8' to avoid it)")
    header, first = lines[0], (lines[1] if len(lines) > 1 else None)

    def fields(line: str, sep: str) -> int:
        return len(next(csv.reader([line], delimiter=sep), []))

    if fields(header, delimiter) > 1:
        return None
    found = [
        sep for sep in _CANDIDATE_DELIMITERS
        if sep != delimiter and fields(header, sep) > 1 and (first is None or fields(first, sep) == fields(header, sep))
    ]
    if not found:
        return None
    sep = max(found, key=lambda c: fields(header, c))
    decimal = ""
    if first is not None and sep != "," and any(_DECIMAL_COMMA.search(line) for line in lines[1:20]):
        decimal = ("; its numbers also use decimal commas (e.g. '12,5'), which are not read as numbers: export them "
                   "with a decimal point")
    return (
        f"file {name!r} is separated by {_shown(sep)} ({fields(header, sep)} columns in its header), not by the "
        f"configured delimiter {_shown(delimiter)}: set dataset.csv_delimiter: {_shown(sep)} in the config, or save "
        f"it {_shown(delimiter)}-separated{decimal}"
    )
