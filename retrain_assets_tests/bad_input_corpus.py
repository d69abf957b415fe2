"""A corpus of bad landed files, each one kind of trouble a real feed produces.

Each :class:`Kind` builds one landed file (or one filesystem oddity) from a clean batch and says
what a user must see: the outcome (ignored with a stated rule, refused into ``rejected/``, held back
by validation, passed with rows quarantined, passed) and words the message must contain (naming
the file, column or row and what to do). ``test_bad_input_corpus`` replays every kind through the
real landing sensor and ingest job and checks both, plus that the landed bytes are kept somewhere.
"""

from __future__ import annotations

import gzip
import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from retrain_assets.core import synthetic, synthetic_batches


IGNORED = "ignored"  # left in the landing folder, no run, the sensor's message states the rule
REFUSED = "refused"  # moved to rejected/ by the sensor or raw_data, with a reason file
HELD_BACK = "held_back"  # ingested, validation failed as a batch; the file moved to rejected/
QUARANTINED = "quarantined"  # passed; some rows quarantined with reasons
PASSED = "passed"  # passed with nothing quarantined

NUMERIC = "monthly_charges"
OTHER_NUMERIC = "tenure_months"
CATEGORICAL = "contract"
TIME = "event_time"
ID = "customer_id"
TARGET = "churned"


def clean(rows: int = 200, seed: int = 7, batch_index: int = 4) -> pd.DataFrame:
    """A clean labelled batch like the reference batches."""
    return synthetic_batches.make_batch(rows, seed=seed, batch_index=batch_index)


def csv_text(frame: pd.DataFrame, **kwargs) -> str:
    return frame.to_csv(index=False, **kwargs)


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def with_cells(column: str, values: dict[int, object], frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """A clean batch (as text) with some cells replaced; keys are 0-based row positions."""
    frame = (clean() if frame is None else frame).astype(object)
    for row, value in values.items():
        frame.loc[row, column] = value
    return frame


@dataclass(frozen=True)
class Kind:
    """One kind of bad landed file.

    Attributes:
        slug: Short name (part of the batch id).
        what: One line saying what is wrong with it.
        expect: The outcomes a user may see (usually one).
        words: Groups of words; the user-visible message must contain one word of every group.
        make: ``(landing_dir, batch_id) -> path`` that lands it; the returned path is what the user
            dropped (its bytes must be kept), or None when nothing is a file (a folder, a broken link).
    """

    slug: str
    what: str
    expect: tuple[str, ...]
    words: tuple[tuple[str, ...], ...] = ()
    make: Callable[[Path, str], Path | None] = field(default=None, repr=False)
    as_id: str | None = None  # the batch id the file really lands under, when not the corpus id


def _write(data: bytes | str, ext: str = ".csv") -> Callable[[Path, str], Path]:
    def make(landing: Path, batch_id: str) -> Path:
        path = landing / f"{batch_id}{ext}"
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        return path

    return make


def _named(name_of: Callable[[str], str], data: bytes | str) -> Callable[[Path, str], Path]:
    def make(landing: Path, batch_id: str) -> Path:
        path = landing / name_of(batch_id)
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        return path

    return make


def _frame(frame_of: Callable[[], pd.DataFrame], ext: str = ".csv", **csv_kwargs) -> Callable[[Path, str], Path]:
    def make(landing: Path, batch_id: str) -> Path:
        frame = frame_of()
        path = landing / f"{batch_id}{ext}"
        if ext == ".parquet":
            path.write_bytes(parquet_bytes(frame))
        else:
            path.write_text(csv_text(frame, **csv_kwargs), encoding="utf-8")
        return path

    return make


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _xlsx_like() -> bytes:
    return _zip_bytes({
        "[Content_Types].xml": b"<?xml version='1.0'?><Types/>",
        "xl/workbook.xml": b"<workbook/>",
        "xl/worksheets/sheet1.xml": b"<worksheet/>",
    })


def _symlink_outside(landing: Path, batch_id: str) -> Path:
    outside = landing.parent / "outside-secret.csv"
    outside.write_text(csv_text(clean()), encoding="utf-8")
    link = landing / f"{batch_id}.csv"
    link.symlink_to(outside)
    return outside


def _dangling_symlink(landing: Path, batch_id: str) -> None:
    (landing / f"{batch_id}.csv").symlink_to(landing.parent / "no-such-file.csv")
    return None


def _directory(landing: Path, batch_id: str) -> None:
    folder = landing / f"{batch_id}.csv"
    folder.mkdir()
    (folder / "part-0000.csv").write_text(csv_text(clean(20)), encoding="utf-8")
    return None


def _shuffled_labels() -> pd.DataFrame:
    frame = clean(600, seed=11)
    frame[TARGET] = 1 - frame[TARGET]
    return frame


def _day_first_dates() -> pd.DataFrame:
    frame = clean().astype(object)
    frame[TIME] = pd.to_datetime(clean()[TIME]).dt.strftime("%d/%m/%Y %H:%M:%S")
    return frame


def _future_times() -> pd.DataFrame:
    frame = clean().astype(object)
    frame[TIME] = (pd.Timestamp.now() + pd.Timedelta(days=400)).strftime("%Y-%m-%d %H:%M:%S")
    return frame


def _constant(column: str) -> Callable[[], pd.DataFrame]:
    def build() -> pd.DataFrame:
        frame = clean()
        frame[column] = frame[column].iloc[0]
        return frame

    return build


def kinds() -> list[Kind]:
    """Every kind in the corpus."""
    base = clean()
    text = csv_text(base)
    header, *lines = text.splitlines()
    k: list[Kind] = []

    def add(slug, what, expect, words=(), make=None, as_id=None):
        expect = (expect,) if isinstance(expect, str) else tuple(expect)
        words = tuple(tuple(g) if not isinstance(g, str) else (g,) for g in words)
        k.append(Kind(slug, what, expect, words, make, as_id))

    # --- files that are not a batch at all ---------------------------------------------------
    add("empty", "0 bytes", REFUSED, [["empty"]], _write(b""))
    add("header-only", "a header and no rows", REFUSED, [["no data rows", "no rows"]], _write(header + "\n"))
    add("whitespace", "only blank lines", REFUSED, [["whitespace", "empty"]], _write("\n \n\t\n"))
    add("binary", "random bytes", REFUSED, [["binary", "not valid", "not a"]],
        _write(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()))
    add("gzip-as-csv", "a gzip file named .csv", REFUSED, [["gzip"]], _write(gzip.compress(text.encode())))
    add("zip-as-csv", "a zip archive named .csv", REFUSED, [["zip"]], _write(_zip_bytes({"a.csv": text.encode()})))
    add("xlsx-as-csv", "an Excel workbook named .csv", REFUSED, [["excel", "xlsx"]], _write(_xlsx_like()))
    add("parquet-as-csv", "a Parquet file named .csv", REFUSED, [["parquet"]], _write(parquet_bytes(base)))
    add("csv-as-parquet", "CSV text named .parquet", REFUSED, [["csv"]], _write(text, ".parquet"))
    add("truncated-parquet", "a Parquet file cut short", REFUSED, [["parquet"]],
        _write(parquet_bytes(base)[:-200], ".parquet"))
    add("pdf-as-csv", "a PDF named .csv", REFUSED, [["pdf", "binary", "not valid"]], _write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + b"\x00" * 64))
    add("latin1", "Latin-1 text with accents", REFUSED, [["utf-8", "encoding"]],
        _write(text.replace("north", "nörth").encode("latin-1")))
    add("utf16", "UTF-16 text", REFUSED, [["utf-16", "utf-8", "encoding"]], _write(text.encode("utf-16")))
    add("nul-bytes", "NUL bytes inside a CSV", REFUSED, [["nul"]], _write(text[:300] + "\x00\x00" + text[300:]))

    # --- CSV dialects --------------------------------------------------------------------------
    add("semicolon", "';'-separated", REFUSED, [["delimiter", "separat"], ["';'", "semicolon", ";"]],
        _write(csv_text(base, sep=";")))
    add("tab", "tab-separated", REFUSED, [["delimiter", "separat"], ["tab", "\\t"]], _write(csv_text(base, sep="\t")))
    add("pipe", "'|'-separated", REFUSED, [["delimiter", "separat"], ["|"]], _write(csv_text(base, sep="|")))
    add("decimal-comma", "';' with decimal commas", REFUSED, [["delimiter", "separat", "decimal"]],
        _write(csv_text(base, sep=";", decimal=",")))
    add("sep-hint", "Excel 'sep=,' first line", REFUSED, [["sep="]], _write("sep=,\n" + text))
    add("crlf", "Windows line endings", PASSED, (), _write(text.replace("\n", "\r\n")))
    add("cr-only", "old Mac line endings", (PASSED, REFUSED), [], _write(text.replace("\n", "\r")))
    add("utf8-bom", "UTF-8 with a byte-order mark", PASSED, (), _write("\ufeff" + text))
    add("trailing-blank-lines", "blank lines at the end", PASSED, (), _write(text + "\n\n\n"))
    add("quoted-everything", "every field quoted", PASSED, (), _frame(lambda: base, quoting=1))
    add("ragged-long", "a row with an extra field", REFUSED, [["line", "row"], ["field", "expected"]],
        _write("\n".join([header, *lines[:5], lines[5] + ",surplus", *lines[6:]]) + "\n"))
    add("ragged-short", "a row with fields missing", REFUSED, [["line 7"], ["cut short"]],
        _write("\n".join([header, *lines[:5], ",".join(lines[5].split(",")[:4]), *lines[6:]]) + "\n"))
    add("unclosed-quote", "a quote never closed", REFUSED, [["quote", "eof", "line", "well-formed"]],
        _write("\n".join([header, *lines[:5], '"' + lines[5], *lines[6:]]) + "\n"))
    add("header-repeated", "the header again mid-file", (QUARANTINED, HELD_BACK), [["row"]],
        _write("\n".join([header, *lines[:50], header, *lines[50:]]) + "\n"))
    add("no-header", "data rows without a header", (REFUSED, HELD_BACK), [["header", "column"]],
        _write("\n".join(lines) + "\n"))

    # --- names and filesystem oddities ---------------------------------------------------------
    add("upper-ext", "extension .CSV", REFUSED, [["lower case", ".csv"]], _named(lambda b: f"{b}.CSV", text))
    add("txt-ext", "extension .txt", REFUSED, [[".txt", "extension"]], _named(lambda b: f"{b}.txt", text))
    add("no-ext", "no extension", REFUSED, [["extension"]], _named(lambda b: b, text))
    add("csv-gz", "a .csv.gz file", REFUSED, [["gzip", ".gz", "extension"]],
        _named(lambda b: f"{b}.csv.gz", gzip.compress(text.encode())))
    add("space-in-name", "a space in the batch id", REFUSED, [["batch id"]], _named(lambda b: f"{b} copy.csv", text))
    add("underscore-name", "a leading underscore (temporary)", IGNORED, [["_"]], _named(lambda b: f"_{b}.csv", text))
    add("dot-name", "a hidden file", IGNORED, [["."]], _named(lambda b: f".{b}.csv", text))
    add("tmp-suffix", "an in-progress .tmp file", IGNORED, [[".tmp", "temporary"]], _named(lambda b: f"{b}.csv.tmp", text))
    add("dotdot-name", "a '..'-like name", (REFUSED, IGNORED), [["batch id", "."]], _named(lambda b: f"..{b}.csv", text))
    add("long-name", "a 200-character batch id", REFUSED, [["batch id", "128"]], _named(lambda b: f"{b}{'x' * 200}.csv", text))
    add("folder", "a directory named like a batch", (REFUSED, IGNORED), [["director", "folder"]], _directory)
    add("dangling-link", "a symlink to nothing", (REFUSED, IGNORED), [["link"]], _dangling_symlink)
    add("outside-link", "a symlink to a file outside landing_dir", (REFUSED, IGNORED), [["link", "outside"]],
        _symlink_outside)

    # --- columns -------------------------------------------------------------------------------
    add("missing-column", "a feature column missing", HELD_BACK, [[NUMERIC]], _frame(lambda: base.drop(columns=[NUMERIC])))
    add("renamed-case", "a column renamed in other case", HELD_BACK, [[NUMERIC]],
        _frame(lambda: base.rename(columns={NUMERIC: NUMERIC.upper()})))
    add("renamed-typo", "a column renamed with a typo", HELD_BACK, [[NUMERIC]],
        _frame(lambda: base.rename(columns={NUMERIC: "monthly_charge"})))
    add("extra-column", "an unexpected column", HELD_BACK, [["surprise"]], _frame(lambda: base.assign(surprise=1)))
    add("reordered", "columns in another order", PASSED, (), _frame(lambda: base[list(reversed(base.columns))]))
    add("blank-header", "a column without a name", REFUSED, [["no name", "position"]],
        _write(header + ",\n" + "\n".join(line + ",x" for line in lines) + "\n"))
    add("dup-header", "a column name twice", REFUSED, [["repeats"]], _write(header + f",{NUMERIC}\n" + "\n".join(line + ",1" for line in lines) + "\n"))
    add("reserved-column", "a column named _row", REFUSED, [["_row"]], _frame(lambda: base.assign(_row=1)))
    add("numeric-as-text", "a numeric column of words", HELD_BACK, [[NUMERIC]],
        _frame(lambda: base.assign(**{NUMERIC: "high"})))
    add("numeric-mostly-text", "60% words in a numeric column", HELD_BACK, [[NUMERIC]],
        _frame(lambda: with_cells(NUMERIC, {i: "n/a-ish" for i in range(120)})))
    add("nan-flood", "60% of a column missing", HELD_BACK, [[NUMERIC], ["missing"]],
        _frame(lambda: with_cells(NUMERIC, {i: None for i in range(120)})))
    add("all-missing", "a whole column empty", HELD_BACK, [[NUMERIC]], _frame(lambda: base.assign(**{NUMERIC: None})))
    add("constant-numeric", "a numeric column that became constant", HELD_BACK, [[NUMERIC], ["constant", "varian"]],
        _frame(_constant(NUMERIC)))
    add("constant-categorical", "a categorical column that became constant", HELD_BACK,
        [[CATEGORICAL], ["constant", "one value", "single"]], _frame(_constant(CATEGORICAL)))
    add("very-wide", "300 extra columns", HELD_BACK, [["unexpected", "extra"]],
        _frame(lambda: pd.concat([base, pd.DataFrame({f"x{i}": 0 for i in range(300)}, index=base.index)], axis=1)))
    add("single-row", "one data row", (PASSED, QUARANTINED), (), _frame(lambda: clean(1)))

    # --- values in numeric columns -----------------------------------------------------------------
    add("inf", "'inf' in a numeric column", QUARANTINED, [[NUMERIC], ["finite", "inf"]], _frame(lambda: with_cells(NUMERIC, {3: "inf"})))
    add("neg-inf", "'-inf'", QUARANTINED, [[NUMERIC], ["finite", "inf"]], _frame(lambda: with_cells(NUMERIC, {3: "-inf"})))
    add("huge", "1e308 in a numeric column", QUARANTINED, [[NUMERIC]], _frame(lambda: with_cells(NUMERIC, {3: "1e308"})))
    add("huge-negative", "-1e308", QUARANTINED, [[NUMERIC]], _frame(lambda: with_cells(NUMERIC, {3: "-1e308"})))
    add("absurd", "1e15 in a column of tens", QUARANTINED, [[NUMERIC]], _frame(lambda: with_cells(NUMERIC, {3: "1e15"})))
    add("huge-everywhere", "every value multiplied by 1e12 (units changed)", HELD_BACK, [[NUMERIC]],
        _frame(lambda: base.assign(**{NUMERIC: base[NUMERIC] * 1e12})))
    add("negative-count", "a negative count", QUARANTINED, [[OTHER_NUMERIC]], _frame(lambda: with_cells(OTHER_NUMERIC, {3: "-500"})))
    add("thousands-sep", "'1,234.5' with a thousands separator", QUARANTINED, [[NUMERIC]],
        _frame(lambda: with_cells(NUMERIC, {3: "1,234.5"})))
    add("unit-suffix", "'12kg' with a unit", QUARANTINED, [[NUMERIC]], _frame(lambda: with_cells(NUMERIC, {3: "12kg"})))
    add("word-in-numeric", "'unknown' in a numeric column", QUARANTINED, [[NUMERIC]],
        _frame(lambda: with_cells(NUMERIC, {3: "unknown"})))
    add("bool-in-numeric", "'true' in a numeric column", QUARANTINED, [[NUMERIC]], _frame(lambda: with_cells(NUMERIC, {3: "true"})))
    add("scientific", "'6.5e1' scientific notation", PASSED, (), _frame(lambda: with_cells(NUMERIC, {3: "6.5e1"})))
    add("padded-number", "' 65.2 ' with spaces", PASSED, (), _frame(lambda: with_cells(NUMERIC, {3: " 65.2 "})))
    add("negative-zero", "'-0.0'", (PASSED, QUARANTINED), (), _frame(lambda: with_cells(OTHER_NUMERIC, {3: "-0.0"})))
    add("denormal", "'1e-320'", (PASSED, QUARANTINED), (), _frame(lambda: with_cells(NUMERIC, {3: "1e-320"})))
    add("hex-number", "'0x41'", QUARANTINED, [[NUMERIC]], _frame(lambda: with_cells(NUMERIC, {3: "0x41"})))
    add("nan-text", "'NaN' text", PASSED, (), _frame(lambda: with_cells(NUMERIC, {3: "NaN"})))
    add("many-bad-rows", "10% of rows with words in a numeric column", HELD_BACK, [[NUMERIC]],
        _frame(lambda: with_cells(NUMERIC, {i: "oops" for i in range(0, 200, 10)})))

    # --- categorical values ----------------------------------------------------------------------
    add("unknown-category", "a category never seen", QUARANTINED, [[CATEGORICAL]],
        _frame(lambda: with_cells(CATEGORICAL, {3: "lifetime"})))
    add("padded-category", "' one_year ' with surrounding spaces", PASSED, (),
        _frame(lambda: with_cells(CATEGORICAL, {i: f" {base.loc[i, CATEGORICAL]} " for i in range(0, 200, 2)})))
    add("tab-padded-category", "a category with a trailing tab", PASSED, (),
        _frame(lambda: with_cells(CATEGORICAL, {3: base.loc[3, CATEGORICAL] + "\t"})))
    add("upper-category", "'ONE_YEAR' in capitals", QUARANTINED, [[CATEGORICAL]],
        _frame(lambda: with_cells(CATEGORICAL, {3: "ONE_YEAR"})))
    add("zero-width-category", "a zero-width space inside a category", QUARANTINED, [[CATEGORICAL]],
        _frame(lambda: with_cells(CATEGORICAL, {3: "one_\u200byear"})))
    add("megabyte-cell", "a 1 MB text cell", QUARANTINED, [[CATEGORICAL], ["long", "length", "characters"]],
        _frame(lambda: with_cells(CATEGORICAL, {3: "x" * 1_000_000})))
    add("formula-equals", "'=HYPERLINK(...)' in a category", QUARANTINED, [[CATEGORICAL]],
        _frame(lambda: with_cells(CATEGORICAL, {3: '=HYPERLINK("http://evil","x")'})))
    add("formula-plus", "'+cmd|' in a category", QUARANTINED, [[CATEGORICAL]], _frame(lambda: with_cells(CATEGORICAL, {3: "+cmd|'/C calc'!A0"})))
    add("formula-at", "'@SUM(1+1)' in a category", QUARANTINED, [[CATEGORICAL]], _frame(lambda: with_cells(CATEGORICAL, {3: "@SUM(1+1)"})))
    add("html-in-category", "'<script>' in a category", QUARANTINED, [[CATEGORICAL]],
        _frame(lambda: with_cells(CATEGORICAL, {3: "<script>alert(1)</script>"})))
    add("newline-in-cell", "a quoted cell holding a newline", QUARANTINED, [[CATEGORICAL]],
        _frame(lambda: with_cells(CATEGORICAL, {3: "one\nyear"})))
    add("missing-category", "an empty category cell", (PASSED, QUARANTINED), (), _frame(lambda: with_cells(CATEGORICAL, {3: None})))

    # --- ids ------------------------------------------------------------------------------------
    add("duplicate-id", "an id twice", QUARANTINED, [[ID], ["unique", "duplicat"]],
        _frame(lambda: with_cells(ID, {4: base.loc[3, ID]})))
    add("missing-id", "an empty id", QUARANTINED, [[ID]], _frame(lambda: with_cells(ID, {3: None})))
    add("all-ids-same", "every row the same id", HELD_BACK, [[ID]], _frame(lambda: base.assign(**{ID: "C1"})))

    # --- time -----------------------------------------------------------------------------------
    add("future-times", "event times a year ahead", (HELD_BACK, QUARANTINED), [[TIME], ["future"]], _frame(_future_times))
    add("one-future-time", "one event time in 2099", QUARANTINED, [[TIME], ["future", "2099"]],
        _frame(lambda: with_cells(TIME, {3: "2099-01-01 00:00:00"})))
    add("ancient-time", "an event time in 1899", QUARANTINED, [[TIME]], _frame(lambda: with_cells(TIME, {3: "1899-01-01 00:00:00"})))
    add("day-first", "dates written day-first (earlier batches ISO)", HELD_BACK, [[TIME], ["format", "day"]],
        _frame(_day_first_dates))
    add("bad-time", "'yesterday' as an event time", QUARANTINED, [[TIME]], _frame(lambda: with_cells(TIME, {3: "yesterday"})))
    add("epoch-time", "epoch seconds as event time", (HELD_BACK, QUARANTINED), [[TIME]],
        _frame(lambda: base.assign(**{TIME: (pd.to_datetime(base[TIME]).astype("int64") // 10**9).astype(str)})))
    add("tz-mixed", "times with mixed UTC offsets", (PASSED, QUARANTINED, HELD_BACK), (),
        _frame(lambda: with_cells(TIME, {3: "2024-01-05T10:00:00+05:00"})))

    # --- labels ---------------------------------------------------------------------------------
    add("unknown-class", "a label outside the known classes", QUARANTINED, [[TARGET]], _frame(lambda: with_cells(TARGET, {3: 7})))
    add("label-as-text", "'yes' as a label", QUARANTINED, [[TARGET]], _frame(lambda: with_cells(TARGET, {3: "yes"})))
    add("too-many-classes", "a continuous number as label", HELD_BACK, [[TARGET]],
        _frame(lambda: base.assign(**{TARGET: np.arange(len(base)) * 1.5})))
    add("no-target-column", "no target column (unlabelled)", PASSED, (), _frame(lambda: base.drop(columns=[TARGET])))
    add("empty-target", "a target column with every cell empty (unlabelled)", PASSED, (),
        _frame(lambda: base.assign(**{TARGET: None})))
    add("partial-target", "labels missing on 30% of rows (late labels)", PASSED, (),
        _frame(lambda: with_cells(TARGET, {i: None for i in range(60)})))

    # --- Parquet specifics ----------------------------------------------------------------------
    add("parquet-clean", "a clean Parquet batch", PASSED, (), _frame(lambda: base, ".parquet"))
    add("parquet-text-numbers", "numbers stored as text in Parquet", PASSED, (),
        _frame(lambda: base.assign(**{NUMERIC: base[NUMERIC].astype(str)}), ".parquet"))
    add("parquet-words", "words in a Parquet numeric column", HELD_BACK, [[NUMERIC]],
        _frame(lambda: base.assign(**{NUMERIC: "high"}), ".parquet"))
    add("parquet-empty", "a Parquet file with 0 rows", REFUSED, [["no data rows", "no rows"]],
        _frame(lambda: base.iloc[:0], ".parquet"))
    add("parquet-nested", "a list-valued column in Parquet", HELD_BACK, [["nested"]],
        _frame(lambda: base.assign(nested=[[1, 2]] * len(base)), ".parquet"))
    add("parquet-huge", "1e308 in Parquet float column", QUARANTINED, [[NUMERIC]],
        _frame(lambda: with_cells(NUMERIC, {3: 1e308}, base.copy()).astype({NUMERIC: float}), ".parquet"))
    add("parquet-tz", "tz-aware event times in Parquet", (PASSED, QUARANTINED), (),
        _frame(lambda: base.assign(**{TIME: pd.to_datetime(base[TIME]).dt.tz_localize("UTC")}), ".parquet"))
    add("parquet-categorical", "pandas categorical dtype in Parquet", PASSED, (),
        _frame(lambda: base.assign(**{CATEGORICAL: base[CATEGORICAL].astype("category")}), ".parquet"))

    # --- a batch id again, or out of turn (the reference batches are b0001..b0003) ----------------
    def extended(landing: Path, batch_id: str) -> Path:
        path = landing / "b0003.csv"
        first = path.read_text(encoding="utf-8")
        path.write_text(first + "\n".join(first.splitlines()[1:51]).replace("C0003", "C8003") + "\n", encoding="utf-8")
        return path

    def out_of_order(landing: Path, batch_id: str) -> Path:
        path = landing / "a0001.csv"
        path.write_text((landing / "b0001.csv").read_text(encoding="utf-8").replace("C0001", "C9001"), encoding="utf-8")
        return path

    add("changed-redrop", "an ingested batch id landed again with other contents", REFUSED,
        [["already ingested", "already taken"], ["new batch id", "replace"]],
        _named(lambda b: "b0002.csv", csv_text(clean(400, seed=99, batch_index=2))), as_id="b0002")
    add("extended-redrop", "an ingested batch landed again with rows appended (a writer that paused)", REFUSED,
        [["extend", "appended", "more rows"], ["replace"]], extended, as_id="b0003")
    add("out-of-order", "a batch id that sorts before batches already taken in", PASSED, [["order"]],
        out_of_order, as_id="a0001")

    def two_files(landing: Path, batch_id: str) -> Path:
        (landing / f"{batch_id}.parquet").write_bytes(parquet_bytes(base))
        return _write(text)(landing, batch_id)

    add("two-files", "one batch id as .csv and .parquet at once", REFUSED, [["several files"]], two_files)
    return k
