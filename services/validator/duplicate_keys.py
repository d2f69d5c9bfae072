"""A file's duplicate keys as frames: written once per chunk, read back together to decide
DUP_01 across the file. No I/O here.

A chunk stores its keys as one value (an Arrow IPC stream, lz4) with the chunk's task; the
deciding worker reads the upload's values back and finds the repeats in memory. A
table with a row per key cost PostgreSQL about a fifth of its work on a big upload: a million
rows COPYed and indexed, sorted again by the outcome, then deleted.

A key is 'COURSE|DATE|KIND|ID' (`validation.duplicate_key_text`), only from valid cells; a row
has one key per identifier it carries. Each key row also says whether its row is valid, carries
a warning, and was found by DUP_02 already (when its chunk was checked), which is what marking
the row needs to adjust the counts exactly.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import polars as pl

from services.core.scheme.bulk_rules import ROW_NUMBER

KEY: Final = "key"
IS_VALID: Final = "is_valid"
HAS_WARNING: Final = "has_warning"
DUP_02: Final = "dup_02"
KEYS_SCHEMA: Final = pl.Schema(
    {
        ROW_NUMBER: pl.Int32(),
        KEY: pl.String(),
        IS_VALID: pl.Boolean(),
        HAS_WARNING: pl.Boolean(),
        DUP_02: pl.Boolean(),
    }
)


def empty_keys() -> pl.DataFrame:
    return pl.DataFrame(schema=KEYS_SCHEMA)


def to_stored(keys: pl.DataFrame) -> bytes:
    """A chunk's keys as the value stored with its task (lz4: keys share most of their text)."""
    out = io.BytesIO()
    keys.select(pl.col(name).cast(dtype) for name, dtype in KEYS_SCHEMA.items()).write_ipc(
        out, compression="lz4"
    )
    return out.getvalue()


def from_stored(value: bytes) -> pl.DataFrame:
    """One chunk's keys, as `to_stored` wrote them."""
    return pl.read_ipc(io.BytesIO(value))


@dataclass(frozen=True, slots=True)
class Marked:
    """Rows a duplicate rule marks, and what marking them does to the counts. Row numbers stay
    Polars series (Int32): a file that holds its rows twice marks half a million rows, which
    as Python lists took over 100 MB."""

    rows: int  # rows the rule marks (each counts once for the code)
    newly_invalid: int  # of them, rows that were valid until now
    warned_lost: int  # of those, rows that carried a warning (no longer counted as warned)
    first_rows: list[int]  # the first `limit` marked rows, for the stored issues
    were_valid: pl.Series  # the rows that were valid (their achievements are gone), in order
    all_rows: pl.Series  # every marked row, in order


def summarise(found: pl.DataFrame, limit: int) -> Marked:
    """What marking the rows of `found` (key rows, several per row possible) does, from their
    validity as `found` has it."""
    rows = found.select(ROW_NUMBER, IS_VALID, HAS_WARNING).unique(ROW_NUMBER).sort(ROW_NUMBER)
    was_valid = rows.filter(pl.col(IS_VALID))
    return Marked(
        rows=rows.height,
        newly_invalid=was_valid.height,
        warned_lost=was_valid.filter(pl.col(HAS_WARNING)).height,
        first_rows=rows[ROW_NUMBER].head(limit).to_list(),
        were_valid=was_valid.get_column(ROW_NUMBER),
        all_rows=rows.get_column(ROW_NUMBER),
    )


def as_array_text(row_numbers: pl.Series) -> str:
    """Row numbers as one text for PostgreSQL (`string_to_array($n, ',')::integer[]`): no
    Python object per row."""
    return row_numbers.cast(pl.String).str.join(",").item() if row_numbers.len() else ""


_HASH: Final = "hash"
_REPEATS_PER_PASS: Final = 100_000


def in_file_duplicates(stored: Sequence[bytes], limit: int) -> Marked:
    """DUP_01 over every chunk's stored keys: every row after the first that shares a key with
    it (the first counts even when it is invalid for another reason). A chunk dropped its own
    repeats already (stored as invalid rows, so they are counted once, by this rule).

    A million keys' text in one frame, with a window or `is_duplicated` over it, took over 200
    MB. So, first, every key's hash alone (8 bytes a key), sorted and compared with its
    neighbour, finds the hashes that repeat; then only the keys with such a hash are read,
    chunk by chunk, and DUP_01 is decided exactly on their text (two keys may share a hash).
    Memory stays near one chunk's keys unless many keys repeat."""
    if not stored:
        return summarise(empty_keys(), limit)

    def chunks() -> Iterator[pl.DataFrame]:
        return (from_stored(value) for value in stored)

    hashes = (
        pl.concat([chunk.select(pl.col(KEY).hash().alias(_HASH)) for chunk in chunks()])
        .get_column(_HASH)
        .sort()
    )
    repeated = hashes.filter(hashes == hashes.shift(1)).unique()
    del hashes
    if repeated.is_empty():
        return summarise(empty_keys(), limit)
    # Many repeats (a file holding its rows twice): the repeated hashes in parts, a pass over
    # the chunks each, so that no pass holds more than about `_REPEATS_PER_PASS` keys' text.
    # Equal keys have equal hashes, so each part is exact on its own.
    passes = -(-repeated.len() // _REPEATS_PER_PASS)
    later = []
    for part in range(passes):
        these = repeated.filter(repeated % passes == part)
        candidates = pl.concat(
            [
                chunk.filter(pl.col(KEY).hash().is_in(these.implode())).with_columns(
                    # A copy of the text: a filtered string column keeps its source's whole
                    # buffers alive, here every chunk's keys.
                    pl.concat_str(pl.col(KEY), pl.lit("")).alias(KEY)
                )
                for chunk in chunks()
            ]
        )
        later.append(
            candidates.filter(pl.col(ROW_NUMBER) > pl.col(ROW_NUMBER).min().over(KEY)).select(
                ROW_NUMBER, IS_VALID, HAS_WARNING
            )
        )
    return summarise(pl.concat(later), limit)


def not_yet_marked_by_dup_02(chunk: pl.DataFrame, invalid_rows: pl.Series) -> pl.DataFrame:
    """A chunk's keys for DUP_02's re-check at the outcome: the rows it has not marked yet, with
    `invalid_rows` (taken by DUP_01 meanwhile) no longer valid."""
    taken = pl.col(ROW_NUMBER).is_in(invalid_rows.implode())
    return chunk.filter(~pl.col(DUP_02)).with_columns((pl.col(IS_VALID) & ~taken).alias(IS_VALID))
