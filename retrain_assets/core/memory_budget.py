"""How one stage's memory limit (``storage.memory_limit_mb``) is shared out: DuckDB's own
``memory_limit`` and the rows of each chunk a batch is streamed in. Pure Python (no Dagster).

A stage (raw_data, validated_data) holds a fixed base (the interpreter with pandas, pyarrow, DuckDB
and Great Expectations loaded) plus what one chunk needs while it is judged; DuckDB's buffers (the
ids counted for duplicates, a Parquet file read in) get a share of the rest and spill to disk
beyond it. The constants are measured by ``bench/large_batch.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

BASE_MB = 400
"""A stage's memory before any batch: Python with Dagster, pandas, pyarrow, DuckDB and GX loaded (measured
~330 MB with the definitions loaded; a GX context adds ~100 MB, counted in the chunk's share)."""

WORKING_MB = 300
"""What a stage's work holds above the base whatever its chunk size: the GX context, validation's
running state, pandas' and DuckDB's own allocations outside its ``memory_limit``. Measured by
``bench/large_batch.py`` at 10M rows × 20 columns: validated_data peaked ~400 MB above the base
plus DuckDB's share and the chunk (e.g. 1,096 MB at a 1,024 MB limit when this was not set aside)."""

DUCKDB_SHARE = 0.25
"""DuckDB's share of the memory above the base."""

BYTES_PER_CELL = 250
"""Peak working memory per cell of a chunk while it is parsed, checked by GX and written: ~110 bytes measured
on 14 numeric and 6 text columns, doubled for text-heavy batches."""

MIN_CHUNK_ROWS = 1_000
MAX_CHUNK_ROWS = 1_000_000
MIN_LIMIT_MB = 1024
"""The smallest limit a stage can keep to (the base, DuckDB's least and a chunk of MIN_CHUNK_ROWS)."""


@dataclass(frozen=True)
class MemoryBudget:
    """What one stage may use.

    Attributes:
        limit_mb: The stage's peak resident memory target (``storage.memory_limit_mb``).
    """

    limit_mb: int

    @property
    def spare_mb(self) -> int:
        """Memory above the base and the stage's fixed working memory (:data:`WORKING_MB`)."""
        return max(self.limit_mb - BASE_MB - WORKING_MB, 0)

    @property
    def duckdb_mb(self) -> int:
        """DuckDB's ``memory_limit`` (it spills to disk beyond it)."""
        return max(int(self.spare_mb * DUCKDB_SHARE), 64)

    def chunk_rows(self, columns: int) -> int:
        """Rows per chunk for a batch of ``columns`` columns, within MIN_CHUNK_ROWS..MAX_CHUNK_ROWS."""
        chunk_bytes = (self.spare_mb - self.duckdb_mb) * 2**20
        rows = chunk_bytes // (max(columns, 1) * BYTES_PER_CELL)
        return int(min(max(rows, MIN_CHUNK_ROWS), MAX_CHUNK_ROWS))

    def apply(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Set DuckDB's ``memory_limit`` on this connection's database to :attr:`duckdb_mb`."""
        conn.execute(f"SET memory_limit = '{self.duckdb_mb}MiB'")
