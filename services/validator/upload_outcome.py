"""The upload status from `received` to its outcome: the one module that moves it.

Every transition is guarded in SQL by the status it leaves (`received` or `validating`), so a
second worker deciding the same upload, or a redelivered message, changes nothing; the outcome
is decided with the upload row locked, once, after the last chunk. Outcomes of one ATO are
serialised by an advisory lock, so DUP_02 between two uploads finishing at once is decided in
one order. A worker never waits for that lock: when another upload of the ATO is being decided,
the decision is deferred, and the worker holding the lock decides it after its own (the sweep
takes any the holder missed).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg
import polars as pl

from services.core.events import (
    AchievementsAccepted,
    Topics,
    UploadProgress,
    UploadValidated,
    ValidationStarted,
    topic_for,
)
from services.core.logging import get_logger
from services.core.metrics import DECISIONS_DEFERRED, record_upload_outcome
from services.core.outbox import announce_written, enqueue
from services.core.scheme.codes import Code, FileError, Policy, UploadStatus
from services.core.scheme.outcome import (
    accepts_rows,
    decide_status,
    file_error_after_reading,
    issue_position,
)
from services.core.scheme.validation import duplicate_issue
from services.core.states import IN_PROGRESS, UploadState
from services.validator import chunk_queue, duplicate_keys, duplicates
from services.validator.chunk_queue import Segment
from services.validator.chunk_validation import RELEASE_AT_PLACEHOLDER

log = get_logger()

UNDECIDED = sorted(state.value for state in IN_PROGRESS)
# How long after the chunks' DUP_02 look an upload of the same ATO may commit its acceptance
# and still have been invisible to them: the outcome re-checks the uploads accepted since
# validation started, less this margin (a commit follows its last statement at once).
_ACCEPTANCE_COMMIT_MARGIN = timedelta(minutes=5)


def _outcome_lock(ato_id: str) -> str:
    """The key of the advisory lock that serialises the outcomes of the ATO `ato_id` (an SQL
    expression: a parameter or a column)."""
    return f"hashtextextended('upload-outcome:' || {ato_id}, 0)"


@dataclass(frozen=True, slots=True)
class Upload:
    upload_id: uuid.UUID
    ato_id: str
    storage_key: str
    sha256: str
    policy: str
    upload_date: date
    status: str
    chunks_total: int | None
    size_bytes: int = 0  # the stored file's

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Upload:
        return cls(
            upload_id=row["upload_id"],
            ato_id=row["ato_id"],
            storage_key=row["storage_key"],
            sha256=row["sha256"],
            policy=row["policy"],
            upload_date=row["upload_date"],
            status=row["status"],
            chunks_total=row["chunks_total"],
            size_bytes=row["size_bytes"],
        )

    @property
    def decided(self) -> bool:
        return self.status not in UNDECIDED


_UPLOAD_COLUMNS = (
    "upload_id, ato_id, storage_key, sha256, policy, upload_date, status, chunks_total, size_bytes"
)


async def load(
    connection: asyncpg.Connection,
    upload_id: uuid.UUID,
    *,
    lock: bool = False,
    skip_locked: bool = False,
) -> Upload | None:
    """The upload; `lock` takes its row lock (waiting), `skip_locked` takes it only if free
    (None when another transaction holds it)."""
    locking = " FOR UPDATE SKIP LOCKED" if skip_locked else " FOR UPDATE" if lock else ""
    row = await connection.fetchrow(
        f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE upload_id = $1{locking}", upload_id
    )
    return Upload.from_row(row) if row else None


async def start_validation(connection: asyncpg.Connection, topics: Topics, upload: Upload) -> None:
    """`received` → `validating`, announced once."""
    async with connection.transaction():
        started = await connection.execute(
            "UPDATE uploads SET status = $2, validation_started_at = now()"
            " WHERE upload_id = $1 AND status = $3",
            upload.upload_id,
            UploadState.VALIDATING,
            UploadState.RECEIVED,
        )
        if started.endswith(" 1"):
            await enqueue(
                connection,
                topics,
                ValidationStarted(upload_id=upload.upload_id, ato_id=upload.ato_id),
            )


async def record_plan(
    connection: asyncpg.Connection,
    upload: Upload,
    *,
    encoding: str,
    delimiter: str,
    reference_version: int,
    chunks: list[list[Segment]],
) -> bool:
    """Stores the chunk tasks; False when the upload was planned or decided already (another
    worker got there first: the plans are the same, the first one stands)."""
    async with connection.transaction():
        current = await load(connection, upload.upload_id, lock=True)
        if current is None or current.decided or current.chunks_total is not None:
            return False
        await connection.execute(
            "UPDATE uploads SET chunks_total = $2, encoding = $3, delimiter = $4,"
            " reference_version = $5 WHERE upload_id = $1",
            upload.upload_id,
            len(chunks),
            encoding,
            delimiter,
            reference_version,
        )
        await chunk_queue.record_plan(connection, upload.upload_id, upload.ato_id, chunks)
    return True


async def reference_version_for_planning(connection: asyncpg.Connection) -> int:
    """The current reference version, share-locked until the plan commits, so a reload that
    prunes old versions waits and then sees this upload needs it."""
    version = await connection.fetchval(
        "SELECT version FROM reference_versions WHERE id = 1 FOR SHARE"
    )
    return int(version or 0)


async def announce_progress(
    connection: asyncpg.Connection, topics: Topics, upload_id: uuid.UUID, rows_processed: int
) -> None:
    await enqueue(
        connection, topics, UploadProgress(upload_id=upload_id, rows_processed=rows_processed)
    )


async def reject(
    connection: asyncpg.Connection,
    topics: Topics,
    upload: Upload,
    file_error: FileError,
    encoding: str | None,
) -> bool:
    """A file-level code found while planning: `rejected`, all counts 0, no issues."""
    async with connection.transaction():
        current = await load(connection, upload.upload_id, lock=True)
        if current is None or current.decided:
            return False
        await _discard_rows(connection, upload.upload_id, issues=True)
        await _record_outcome(
            connection, topics, upload, UploadStatus.REJECTED, encoding, _NO_COUNTS, file_error
        )
    await chunk_queue.forget(connection, upload.upload_id)
    return True


async def error_out(
    connection: asyncpg.Connection, topics: Topics, upload_id: uuid.UUID, reason: str
) -> bool:
    """`errored`: the pipeline could not finish for a reason not in the file (scheme v1.1
    section 6). Nothing accepted; the gateway's message asks the ATO to upload again, quoting
    the upload id for support. `reason` goes to the log only."""
    async with connection.transaction():
        upload = await load(connection, upload_id, lock=True)
        if upload is None or upload.decided:
            return False
        await _discard_rows(connection, upload_id, issues=True)
        await _record_outcome(
            connection, topics, upload, UploadStatus.ERRORED, None, _NO_COUNTS, None
        )
    await chunk_queue.forget(connection, upload_id)
    log.error("upload_errored", reason=reason)
    return True


@dataclass(frozen=True, slots=True)
class Counts:
    rows_total: int
    rows_invalid: int
    rows_warned: int
    by_code: dict[str, int]

    @property
    def rows_valid(self) -> int:
        return self.rows_total - self.rows_invalid


_NO_COUNTS = Counts(0, 0, 0, {})


async def decide(
    connection: asyncpg.Connection,
    topics: Topics,
    upload_id: uuid.UUID,
    *,
    max_rows: int,
    max_stored_issues: int,
    amendment_window_s: float,
    accepted_event_chunk: int,
) -> bool:
    """The outcome, once every chunk is done (`_decide`); then, in a transaction of their own,
    the upload's tasks, keys and staged events go: nothing reads them once it is decided, and
    deleting a million keys need not keep the outcome waiting. (If this process dies between
    the two, `chunk_queue.forget_one_decided` finds them.)"""
    decided = await _decide(
        connection,
        topics,
        upload_id,
        max_rows=max_rows,
        max_stored_issues=max_stored_issues,
        amendment_window_s=amendment_window_s,
        accepted_event_chunk=accepted_event_chunk,
    )
    if decided:
        await chunk_queue.forget(connection, upload_id)
    return decided


async def _decide(
    connection: asyncpg.Connection,
    topics: Topics,
    upload_id: uuid.UUID,
    *,
    max_rows: int,
    max_stored_issues: int,
    amendment_window_s: float,
    accepted_event_chunk: int,
) -> bool:
    """The outcome, once every chunk is done: cross-row rules, counts, status, achievements
    announced. False when there is nothing to decide (not all chunks done, decided, or being
    decided by another worker)."""
    started = time.perf_counter()
    async with connection.transaction():
        # Not waiting for the row: if another worker holds it, it is deciding this upload (a
        # chunk's short commit aside, after which the idle sweep comes back), and a worker that
        # waited would be out of the chunk queue for the whole decision.
        upload = await load(connection, upload_id, skip_locked=True)
        if upload is None or upload.decided or upload.chunks_total is None:
            return False
        done = await connection.fetchval(
            "SELECT chunks_done FROM uploads WHERE upload_id = $1", upload_id
        )
        if done < upload.chunks_total:
            return False
        # Not waiting for the ATO either: another of its uploads is being decided (seconds, for
        # a big one), and with many of them finishing at once every worker of every validator
        # would wait here, in a transaction, out of the chunk queue, while other ATOs' chunks
        # queued. The holder decides this upload after its own (`decidable`).
        if not await connection.fetchval(
            f"SELECT pg_try_advisory_xact_lock({_outcome_lock('$1')})", upload.ato_id
        ):
            log.info("decision_deferred")
            DECISIONS_DEFERRED.inc()
            return False
        found = await chunk_queue.totals(connection, upload_id)
        encoding = await connection.fetchval(
            "SELECT encoding FROM uploads WHERE upload_id = $1", upload_id
        )
        file_error = _file_error(found, max_rows)
        if file_error is not None:
            await _discard_rows(connection, upload_id, issues=True)
            await _record_outcome(
                connection,
                topics,
                upload,
                UploadStatus.REJECTED,
                encoding,
                _NO_COUNTS,
                file_error,
                decide_started=started,
            )
            return True
        counts, lost = await _cross_row_rules(connection, upload, found, max_stored_issues)
        status = decide_status(
            Policy(upload.policy), counts.rows_total, counts.rows_invalid, counts.rows_warned, None
        )
        await _keep_first_issues(connection, upload_id, max_stored_issues)
        if accepts_rows(status):
            await _accept(
                connection, topics, upload, amendment_window_s, accepted_event_chunk, counts, lost
            )
        else:
            await _discard_rows(connection, upload_id, issues=False)
        await _record_outcome(
            connection, topics, upload, status, encoding, counts, None, decide_started=started
        )
    return True


async def decidable(
    connection: asyncpg.Connection, *, same_ato_as: uuid.UUID | None = None
) -> uuid.UUID | None:
    """An upload that can be decided now, the longest validating first: its chunks all done,
    its row not locked (a worker deciding it holds it) and its ATO's outcome lock free (another
    of its uploads is being decided: that worker decides this one next); of the ATO of the
    upload `same_ato_as` only, when given (a worker that just decided it)."""
    # The advisory locks held in this database, by key: pg_locks shows a bigint key as its
    # high half in `classid` and its low half in `objid`, with `objsubid` 1.
    upload_id: uuid.UUID | None = await connection.fetchval(
        f"""
        SELECT upload_id FROM uploads
        WHERE status = $1 AND chunks_total IS NOT NULL AND chunks_done >= chunks_total
          AND ($2::uuid IS NULL OR ato_id = (SELECT ato_id FROM uploads WHERE upload_id = $2))
          AND {_outcome_lock("ato_id")} NOT IN (
              SELECT (classid::bigint << 32) | objid::bigint FROM pg_locks
              WHERE locktype = 'advisory' AND objsubid = 1
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))
        ORDER BY validation_started_at
        LIMIT 1
        FOR UPDATE SKIP LOCKED
        """,
        UploadState.VALIDATING,
        same_ato_as,
    )
    return upload_id


def _file_error(found: chunk_queue.ChunkTotals, max_rows: int) -> FileError | None:
    """Section 8's codes known only once every record was read: FILE_01 (found while parsing
    a chunk), FILE_02 (no non-blank row), FILE_05 (over the row limit)."""
    if found.file_error_code is not None:
        return FileError(Code(found.file_error_code), found.file_error_message or "")
    return file_error_after_reading(
        unparseable=None, header=None, rows_total=found.rows_total, row_limit=max_rows
    )


async def _cross_row_rules(
    connection: asyncpg.Connection,
    upload: Upload,
    found: chunk_queue.ChunkTotals,
    max_stored_issues: int,
) -> tuple[Counts, pl.Series]:
    """DUP_01 across chunks, then DUP_02 against uploads accepted while the chunks ran; with
    the counts, the rows they took achievements from."""
    rows_invalid, rows_warned = found.rows_invalid, found.rows_warned
    by_code = dict(found.counts_by_code)
    lost = [pl.Series(dtype=pl.Int32)]
    started = await connection.fetchval(
        "SELECT validation_started_at FROM uploads WHERE upload_id = $1", upload.upload_id
    )
    since = (started or datetime.now(UTC)) - _ACCEPTANCE_COMMIT_MARGIN
    recent = await duplicates.uploads_accepted_since(
        connection, upload.ato_id, upload.upload_id, since
    )
    stored = await duplicates.stored_keys(connection, upload.upload_id)
    # CPU-bound over a million keys at most: off the event loop.
    in_file = await asyncio.to_thread(duplicate_keys.in_file_duplicates, stored, max_stored_issues)
    await duplicates.remove_achievements(connection, upload.upload_id, in_file.were_valid)
    marks = [(Code.DUP_01, in_file)]
    if recent:
        earlier = await duplicates.mark_earlier_upload_duplicates(
            connection,
            upload.ato_id,
            upload.upload_id,
            stored,
            in_file.all_rows,
            recent,
            max_stored_issues,
        )
        await duplicates.remove_achievements(connection, upload.upload_id, earlier.were_valid)
        marks.append((Code.DUP_02, earlier))
    for code, marked in marks:
        if not marked.rows:
            continue
        rows_invalid += marked.newly_invalid
        rows_warned -= marked.warned_lost
        lost.append(marked.were_valid)
        by_code[code.value] = by_code.get(code.value, 0) + marked.rows
        issues = [duplicate_issue(row, code) for row in marked.first_rows]
        await connection.executemany(
            "INSERT INTO row_issues VALUES ($1, $2, $3, NULL, $4, $5, $6, NULL)"
            " ON CONFLICT DO NOTHING",
            [
                (
                    upload.upload_id,
                    issue.row,
                    issue_position(issue),
                    issue.code.value,
                    issue.severity.value,
                    issue.message,
                )
                for issue in issues
            ],
        )
    counts = Counts(found.rows_total, rows_invalid, rows_warned, dict(sorted(by_code.items())))
    return counts, pl.concat(lost).sort()


async def _keep_first_issues(
    connection: asyncpg.Connection, upload_id: uuid.UUID, max_stored_issues: int
) -> None:
    """Chunks each keep up to the cap; the report keeps the upload's first issues by row.

    The cut-off is found once (an uncorrelated subquery) and the rest deleted as one range of
    the primary key: an `OFFSET` subquery joined back per issue was re-run for every issue
    when the statistics of this fast-changing table suggested a nested loop."""
    await connection.execute(
        """
        DELETE FROM row_issues
        WHERE upload_id = $1 AND (row_number, position) > (
            SELECT row_number, position FROM row_issues WHERE upload_id = $1
            ORDER BY row_number, position OFFSET $2 - 1 LIMIT 1)
        """,
        upload_id,
        max_stored_issues,
    )


async def _accept(
    connection: asyncpg.Connection,
    topics: Topics,
    upload: Upload,
    amendment_window_s: float,
    chunk: int,
    counts: Counts,
    lost: pl.Series,
) -> None:
    """The achievements written by the chunks become visible with the status; the amendment
    window starts now; they are announced in events of at most `chunk` achievements, from the
    parts the chunks staged (the release time stamped in), in row order."""
    release_at: datetime = await connection.fetchval(
        "UPDATE uploads SET release_at = now() + make_interval(secs => $2)"
        " WHERE upload_id = $1 RETURNING release_at",
        upload.upload_id,
        amendment_window_s,
    )
    if not await _staged_parts_complete(connection, upload.upload_id, counts, lost):
        await _stage_parts_from_achievements(connection, upload.upload_id, chunk)
    envelope = AchievementsAccepted(
        upload_id=upload.upload_id, ato_id=upload.ato_id, achievements=[]
    )
    topic, key = topic_for(envelope, topics)
    # The event's JSON as text around the staged arrays: the envelope's fields, then its id
    # and achievements (text: nothing parses the 130 MB of a million achievements again).
    envelope_fields = json.dumps(
        envelope.model_dump(mode="json", exclude={"event_id", "achievements"}),
        separators=(",", ":"),
    )
    release_text = release_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    await connection.execute(
        """
        INSERT INTO outbox (topic, key, event_type, payload)
        SELECT $2, $3, $7, $4 || ',"event_id":"' || gen_random_uuid() || '","achievements":'
                           || replace(elements, $5, $6) || '}'
        FROM accepted_event_parts
        WHERE upload_id = $1 AND achievements > 0
        ORDER BY chunk_no, part
        """,
        upload.upload_id,
        topic,
        key,
        envelope_fields.removesuffix("}"),
        RELEASE_AT_PLACEHOLDER,
        release_text,
        envelope.event_type,
    )
    await announce_written(connection)


def _elements(release_at: str) -> str:
    """An `achievements.accepted` array built in PostgreSQL from `achievements` rows (the slow
    path; chunks stage theirs in `ChunkResult.event_parts`), `release_at` the parameter that
    holds the placeholder."""
    return f"""jsonb_agg(jsonb_build_object(
        'achievement_id', achievement_id, 'row_number', row_number,
        'grant_eligible', grant_eligible, 'release_at', {release_at}::text)
        ORDER BY row_number)"""


async def _staged_parts_complete(
    connection: asyncpg.Connection, upload_id: uuid.UUID, counts: Counts, lost: pl.Series
) -> bool:
    """Brings the staged parts in line with the achievements the cross-row rules left: the
    parts holding a row that lost its achievement are built again from the table (rare: DUP_01
    across chunks, DUP_02 against an upload accepted meanwhile). False when the parts do not
    hold every achievement (chunks written before parts were staged)."""
    parts = await connection.fetch(
        "SELECT chunk_no, part, first_row, last_row FROM accepted_event_parts"
        " WHERE upload_id = $1 ORDER BY first_row",
        upload_id,
    )
    staged = pl.DataFrame(
        [tuple(part) for part in parts],
        schema={"chunk_no": pl.Int32, "part": pl.Int32, "first_row": pl.Int32, "last": pl.Int32},
        orient="row",
    ).with_row_index("index")
    # The part each lost row falls in: the last one starting at or before it, if it ends after.
    stale = (
        pl.DataFrame(
            {
                "row": lost,
                "index": staged["first_row"].search_sorted(lost, side="right").cast(pl.Int64) - 1,
            }
        )
        .join(staged.with_columns(pl.col("index").cast(pl.Int64)), on="index")
        .filter(pl.col("row") <= pl.col("last"))
        .select("chunk_no", "part")
        .unique()
        .rows()
    )
    if stale:
        await connection.execute(
            f"""
            UPDATE accepted_event_parts p SET (achievements, elements) = (
                SELECT count(*), coalesce({_elements("$4")}, '[]')::text
                FROM achievements a
                WHERE a.upload_id = p.upload_id
                  AND a.row_number BETWEEN p.first_row AND p.last_row)
            FROM unnest($2::integer[], $3::integer[]) AS s(chunk_no, part)
            WHERE p.upload_id = $1 AND p.chunk_no = s.chunk_no AND p.part = s.part
            """,
            upload_id,
            [chunk_no for chunk_no, _ in stale],
            [part for _, part in stale],
            RELEASE_AT_PLACEHOLDER,
        )
    achievements = await connection.fetchval(
        "SELECT coalesce(sum(achievements), 0) FROM accepted_event_parts WHERE upload_id = $1",
        upload_id,
    )
    return bool(achievements == counts.rows_valid)


async def _stage_parts_from_achievements(
    connection: asyncpg.Connection, upload_id: uuid.UUID, chunk: int
) -> None:
    """Every part built again from the achievements table, in PostgreSQL: the slow path, for
    an upload whose chunks did not stage their parts."""
    await connection.execute("DELETE FROM accepted_event_parts WHERE upload_id = $1", upload_id)
    await connection.execute(
        f"""
        INSERT INTO accepted_event_parts
        SELECT $1, 0, part, min(row_number), max(row_number), count(*),
               {_elements("$3")}::text
        FROM (SELECT achievement_id, row_number, grant_eligible,
                     (row_number() OVER (ORDER BY row_number) - 1) / $2 AS part
              FROM achievements WHERE upload_id = $1) numbered
        GROUP BY part
        """,
        upload_id,
        chunk,
        RELEASE_AT_PLACEHOLDER,
    )


async def _discard_rows(
    connection: asyncpg.Connection, upload_id: uuid.UUID, *, issues: bool
) -> None:
    """Nothing of an upload that accepts no row stays: its provisional achievements; its issues
    too when it is refused as a whole (section 8: a rejected file has none). Its tasks and keys
    go after the outcome's commit (`chunk_queue.forget`)."""
    await connection.execute("DELETE FROM achievements WHERE upload_id = $1", upload_id)
    if issues:
        await connection.execute("DELETE FROM row_issues WHERE upload_id = $1", upload_id)


async def _record_outcome(
    connection: asyncpg.Connection,
    topics: Topics,
    upload: Upload,
    status: UploadStatus,
    encoding: str | None,
    counts: Counts,
    file_error: FileError | None,
    *,
    message: str | None = None,
    decide_started: float | None = None,
) -> None:
    """The final status, guarded by the status it leaves, and `upload.validated`.

    `validated_at` is the last thing stamped before the commit: DUP_02's re-check at another
    upload's outcome relies on it being close to the moment this one became visible."""
    updated = await connection.execute(
        """
        UPDATE uploads SET status = $2, encoding = $3, rows_total = $4, rows_valid = $5,
               rows_invalid = $6, rows_warned = $7, counts_by_code = $8,
               file_error_code = $9, file_error_message = $10, rows_processed = $4,
               validated_at = clock_timestamp()
        WHERE upload_id = $1 AND status = ANY($11::text[])
        """,
        upload.upload_id,
        status.value,
        encoding,
        counts.rows_total,
        counts.rows_valid,
        counts.rows_invalid,
        counts.rows_warned,
        counts.by_code,
        file_error.code.value if file_error else None,
        file_error.message if file_error else None,
        list(UNDECIDED),
    )
    if not updated.endswith(" 1"):
        raise RuntimeError("the upload's status changed under its row lock")
    await enqueue(
        connection,
        topics,
        UploadValidated(
            upload_id=upload.upload_id,
            ato_id=upload.ato_id,
            status=status.value,
            encoding=encoding,
            rows_total=counts.rows_total,
            rows_valid=counts.rows_valid,
            rows_invalid=counts.rows_invalid,
            rows_warned=counts.rows_warned,
            counts_by_code=counts.by_code,
            file_error_code=file_error.code.value if file_error else None,
        ),
    )
    log.info(
        "upload_outcome",
        status=status.value,
        rows_total=counts.rows_total,
        rows_invalid=counts.rows_invalid,
        file_error_code=file_error.code.value if file_error else None,
        # How long the deciding transaction ran up to here (the commit follows): the share of
        # an upload's time spent after its last chunk, which benchmarks report.
        **(
            {"decide_s": round(time.perf_counter() - decide_started, 3)}
            if decide_started is not None
            else {}
        ),
    )
    record_upload_outcome(
        status.value,
        rows_total=counts.rows_total,
        rows_invalid=counts.rows_invalid,
        by_code=counts.by_code,
        received_s_ago=await connection.fetchval(
            "SELECT extract(epoch FROM clock_timestamp() - received_at)::float8 FROM uploads"
            " WHERE upload_id = $1",
            upload.upload_id,
        ),
    )
