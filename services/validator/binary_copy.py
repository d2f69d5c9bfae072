"""PostgreSQL's binary COPY format for a Polars frame, encoded column by column (pgpq).

Binary COPY carries no types: each value goes to its column's receive function as it is, so
each frame column must already have its table column's binary form: `Binary` of 16 bytes for a
`uuid`, `Int32` for an `integer`, `Date` for a `date`, `Boolean`, `String` for `text`. A null
is SQL NULL; an empty string is an empty text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

import polars as pl
from pgpq import ArrowToPostgresBinaryEncoder

# Rows encoded at a time: the stream is made piece by piece as the COPY sends it, so a chunk's
# rows are never held a second time in Arrow and a third time encoded.
PIECE_ROWS: Final = 2_000


async def encode(frame: pl.DataFrame) -> AsyncIterator[bytes]:
    """The COPY stream of `frame`'s rows, columns in order: the header, the rows in pieces of
    `PIECE_ROWS`, the trailer (a source for asyncpg's `copy_to_table`)."""
    # The oldest compatibility level gives large strings and binaries, which pgpq encodes
    # (not the newer string and binary views).
    schema = frame.head(0).to_arrow(compat_level=pl.CompatLevel.oldest()).schema
    encoder = ArrowToPostgresBinaryEncoder(schema)
    yield encoder.write_header()
    for piece in frame.iter_slices(PIECE_ROWS):
        for batch in piece.to_arrow(compat_level=pl.CompatLevel.oldest()).to_batches():
            yield encoder.write_batch(batch)
    yield encoder.finish()
