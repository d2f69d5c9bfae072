"""The chunk tasks in PostgreSQL: planned once per upload, leased fairly, completed once.

Why a table and not a Kafka topic of chunk tasks: a small upload must never queue behind
another ATO's big one, and Kafka partitions are FIFO; a lease query can pick the ATO served
longest ago (`ato_turns`) on every take. A lease that runs out (its worker died or stalled)
makes the chunk available again; completing it is one transaction that also marks it done,
guarded by its state, so a chunk validated twice is written once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import asyncpg

from services.core.metrics import PIPELINE_STEP
from services.core.wakeups import CHUNKS_QUEUED, announce
from services.validator.chunk_validation import (
    ACHIEVEMENT_COLUMNS,
    ChunkResult,
    EventPart,
)

# (start byte, end byte, first row number) of a run of records.
Segment = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class LeasedChunk:
    upload_id: uuid.UUID
    chunk_no: int
    ato_id: str
    segments: tuple[Segment, ...]
    attempts: int  # this lease included
    storage_key: str
    encoding: str
    delimiter: str
    upload_date: date
    reference_version: int


async def record_plan(
    connection: asyncpg.Connection,
    upload_id: uuid.UUID,
    ato_id: str,
    chunks: Sequence[Sequence[Segment]],
) -> None:
    """Call in the transaction that records the upload's plan (the upload row locked)."""
    await connection.executemany(
        "INSERT INTO validation_chunks (upload_id, chunk_no, ato_id, segments)"
        " VALUES ($1, $2, $3, $4)",
        [
            (upload_id, number, ato_id, [value for segment in segments for value in segment])
            for number, segments in enumerate(chunks)
        ],
    )
    await connection.execute(
        "INSERT INTO ato_turns (ato_id, last_served_at) VALUES ($1, '-infinity')"
        " ON CONFLICT (ato_id) DO NOTHING",
        ato_id,
    )
    await announce(connection, CHUNKS_QUEUED)


# `$2`: only chunks of uploads of at most this many bytes (the express lane), or NULL for any.
_LEASE = """
WITH pick AS (
    SELECT c.upload_id, c.chunk_no
    FROM validation_chunks c LEFT JOIN ato_turns t ON t.ato_id = c.ato_id
    WHERE c.state = 'pending' AND (c.lease_until IS NULL OR c.lease_until < now())
      AND ($2::bigint IS NULL OR EXISTS (
          SELECT 1 FROM uploads u WHERE u.upload_id = c.upload_id AND u.size_bytes <= $2))
    ORDER BY t.last_served_at NULLS FIRST, c.planned_at, c.upload_id, c.chunk_no
    LIMIT 1
    FOR UPDATE OF c SKIP LOCKED
)
UPDATE validation_chunks c
SET lease_until = now() + make_interval(secs => $1), attempts = c.attempts + 1
FROM pick
WHERE c.upload_id = pick.upload_id AND c.chunk_no = pick.chunk_no
RETURNING c.upload_id, c.chunk_no, c.ato_id, c.segments, c.attempts,
    extract(epoch FROM clock_timestamp() - c.planned_at)::float8 AS queued_s
"""


async def lease_next(
    connection: asyncpg.Connection, lease_s: float, max_upload_bytes: int | None = None
) -> LeasedChunk | None:
    """Takes the next chunk, round robin across ATOs; None when there is nothing to do.
    `max_upload_bytes`: only a chunk of an upload of at most that size (the express lane)."""
    async with connection.transaction():
        chunk = await connection.fetchrow(_LEASE, lease_s, max_upload_bytes)
        if chunk is None:
            return None
        # A chunk's first lease only: one taken again has waited out a lease, not the queue.
        if chunk["attempts"] == 1:
            PIPELINE_STEP.labels("chunk_queue").observe(max(0.0, chunk["queued_s"]))
        await connection.execute(
            "UPDATE ato_turns SET last_served_at = clock_timestamp() WHERE ato_id = $1",
            chunk["ato_id"],
        )
        upload = await connection.fetchrow(
            "SELECT storage_key, encoding, delimiter, upload_date, reference_version"
            " FROM uploads WHERE upload_id = $1",
            chunk["upload_id"],
        )
    if upload is None:  # chunk tasks are deleted with their upload's outcome, never before it
        raise RuntimeError("a leased chunk's upload is not there")
    flat = chunk["segments"]
    return LeasedChunk(
        upload_id=chunk["upload_id"],
        chunk_no=chunk["chunk_no"],
        ato_id=chunk["ato_id"],
        segments=tuple((flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3)),
        attempts=chunk["attempts"],
        storage_key=upload["storage_key"],
        encoding=upload["encoding"],
        delimiter=upload["delimiter"],
        upload_date=upload["upload_date"],
        reference_version=upload["reference_version"],
    )


@dataclass(frozen=True, slots=True)
class Completed:
    chunks_done: int
    chunks_total: int
    rows_processed: int
    progress_due: bool  # no progress event for this upload within the interval

    @property
    def last(self) -> bool:
        return self.chunks_done >= self.chunks_total


async def complete(
    connection: asyncpg.Connection,
    chunk: LeasedChunk,
    result: ChunkResult,
    progress_interval_s: float,
    event_parts: Sequence[EventPart] = (),
) -> Completed | None:
    """Writes the chunk's results and marks it done, in the caller's transaction; None (and
    nothing written) when the chunk was done already, by a worker that took it after this
    one's lease ran out."""
    state = await connection.fetchval(
        "SELECT state FROM validation_chunks WHERE upload_id = $1 AND chunk_no = $2 FOR UPDATE",
        chunk.upload_id,
        chunk.chunk_no,
    )
    if state != "pending":
        return None
    if result.rows_valid:
        await connection.copy_to_table(
            "achievements",
            source=result.achievements_copy(),
            columns=ACHIEVEMENT_COLUMNS,
            format="binary",
        )
    if result.issues:
        await connection.copy_records_to_table("row_issues", records=result.issues)
    if event_parts:
        await connection.copy_records_to_table(
            "accepted_event_parts",
            records=[(chunk.upload_id, chunk.chunk_no, *part) for part in event_parts],
        )
    file_error = result.file_error
    await connection.execute(
        "UPDATE validation_chunks SET state = 'done', done_at = now(), lease_until = NULL,"
        " rows_total = $3, rows_invalid = $4, rows_warned = $5, counts_by_code = $6,"
        " file_error_code = $7, file_error_message = $8, duplicate_keys = $9"
        " WHERE upload_id = $1 AND chunk_no = $2",
        chunk.upload_id,
        chunk.chunk_no,
        result.rows_total,
        result.rows_invalid,
        result.rows_warned,
        dict(result.counts_by_code),
        file_error.code.value if file_error else None,
        file_error.message if file_error else None,
        result.stored_keys(),
    )
    row = await connection.fetchrow(
        """
        UPDATE uploads SET chunks_done = chunks_done + 1,
               rows_processed = rows_processed + $2,
               issues_stored = issues_stored + $3,
               progress_sent_at = CASE
                   WHEN progress_sent_at IS NULL
                     OR progress_sent_at < now() - make_interval(secs => $4) THEN now()
                   ELSE progress_sent_at END
        WHERE upload_id = $1
        RETURNING chunks_done, chunks_total, rows_processed, progress_sent_at = now() AS due
        """,
        chunk.upload_id,
        result.rows_total,
        len(result.issues),
        progress_interval_s,
    )
    if row is None:  # the chunk's task row was locked above, and uploads are never deleted
        raise RuntimeError("a completed chunk's upload is not there")
    return Completed(row["chunks_done"], row["chunks_total"], row["rows_processed"], row["due"])


@dataclass(frozen=True, slots=True)
class ChunkTotals:
    rows_total: int
    rows_invalid: int
    rows_warned: int
    counts_by_code: dict[str, int]
    file_error_code: str | None
    file_error_message: str | None


async def totals(connection: asyncpg.Connection, upload_id: uuid.UUID) -> ChunkTotals:
    """What the upload's chunks found, added up; the first FILE_01 by row, if any."""
    rows = await connection.fetch(
        "SELECT rows_total, rows_invalid, rows_warned, counts_by_code, file_error_code,"
        " file_error_message FROM validation_chunks WHERE upload_id = $1 ORDER BY chunk_no",
        upload_id,
    )
    by_code: dict[str, int] = {}
    for row in rows:
        for code, count in (row["counts_by_code"] or {}).items():
            by_code[code] = by_code.get(code, 0) + count
    error = next((row for row in rows if row["file_error_code"]), None)
    return ChunkTotals(
        rows_total=sum(row["rows_total"] or 0 for row in rows),
        rows_invalid=sum(row["rows_invalid"] or 0 for row in rows),
        rows_warned=sum(row["rows_warned"] or 0 for row in rows),
        counts_by_code=by_code,
        file_error_code=error["file_error_code"] if error else None,
        file_error_message=error["file_error_message"] if error else None,
    )


async def forget(connection: asyncpg.Connection, upload_id: uuid.UUID) -> None:
    """Once the outcome is decided (and committed) the tasks, with their keys (identifiers),
    and the staged events are not needed. One transaction, the tasks last: while any of it is left,
    the upload's tasks are, which is what `forget_one_decided` looks for."""
    async with connection.transaction():
        await connection.execute("DELETE FROM accepted_event_parts WHERE upload_id = $1", upload_id)
        await connection.execute("DELETE FROM validation_chunks WHERE upload_id = $1", upload_id)


async def forget_one_decided(connection: asyncpg.Connection, undecided: Sequence[str]) -> bool:
    """Forgets one decided upload whose worker died between its outcome and `forget`."""
    upload_id = await connection.fetchval(
        "SELECT c.upload_id FROM validation_chunks c JOIN uploads u USING (upload_id)"
        " WHERE u.status <> ALL($1::text[]) LIMIT 1",
        list(undecided),
    )
    if upload_id is None:
        return False
    await forget(connection, upload_id)
    return True


async def hand_back_uncounted(
    connection: asyncpg.Connection, chunk: LeasedChunk, retry_after_s: float
) -> None:
    """Hands a chunk back after a storage outage: taken again in `retry_after_s`, and this
    lease's attempt does not count toward `chunk_max_attempts` (only this lease's: a later
    lease by another worker has moved `attempts` on, and is left alone)."""
    await connection.execute(
        "UPDATE validation_chunks"
        " SET lease_until = now() + make_interval(secs => $4), attempts = attempts - 1"
        " WHERE upload_id = $1 AND chunk_no = $2 AND state = 'pending' AND attempts = $3",
        chunk.upload_id,
        chunk.chunk_no,
        chunk.attempts,
        retry_after_s,
    )


async def release_lease(connection: asyncpg.Connection, chunk: LeasedChunk) -> None:
    """Hands a chunk back at once (a draining worker), so another takes it without waiting
    for the lease to run out."""
    async with connection.transaction():
        await connection.execute(
            "UPDATE validation_chunks SET lease_until = NULL"
            " WHERE upload_id = $1 AND chunk_no = $2 AND state = 'pending'",
            chunk.upload_id,
            chunk.chunk_no,
        )
        await announce(connection, CHUNKS_QUEUED)
