"""The validator's PostgreSQL side: batched row results, the cross-row rules, the outcome.

Row results arrive by COPY straight into their tables; a batch some of whose rows are already
stored (another worker got there first) fails on the primary key and goes again through
temporary tables and an insert-select that ignores those rows, so a batch written twice leaves
one result per row. What the cross-row rules and the achievements need of a row (its duplicate
keys and normalised values) is kept in `row_payloads`, in typed columns, until the outcome is
decided. Everything that decides the outcome happens in one transaction at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg

from services.core.events import AcceptedAchievement, AchievementsAccepted, Topics
from services.core.outbox import enqueue
from services.core.scheme.codes import Code
from services.core.scheme.validation import CITB_ID_KIND, NI_NUMBER_KIND, ULN_KIND

# (upload_id, row_number, is_valid, has_warning, codes)
RowRecord = tuple[uuid.UUID, int, bool, bool, list[str]]
# (upload_id, row_number, duplicate_keys, *the 12 `Achievement` fields or 12 NULLs)
PayloadRecord = tuple[Any, ...]
# (upload_id, row_number, position, column_name, code, severity, message, masked_value)
IssueRecord = tuple[uuid.UUID, int, int, str | None, str, str, str, str | None]

ACCEPTED_STATUSES = ("passed", "passed_with_warnings", "partially_accepted")
FINAL_STATUSES = ("rejected", "failed", *ACCEPTED_STATUSES)


@dataclass(frozen=True, slots=True)
class UploadToValidate:
    upload_id: uuid.UUID
    ato_id: str
    storage_key: str
    sha256: str
    policy: str
    upload_date: date
    status: str

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> UploadToValidate:
        return cls(
            upload_id=row["upload_id"],
            ato_id=row["ato_id"],
            storage_key=row["storage_key"],
            sha256=row["sha256"],
            policy=row["policy"],
            upload_date=row["upload_date"],
            status=row["status"],
        )


@dataclass(frozen=True, slots=True)
class Progress:
    """Where an interrupted validation stands: rows at or below `last_row` are stored."""

    last_row: int
    rows_stored: int
    issues_stored: int


@dataclass(frozen=True, slots=True)
class Counts:
    rows_total: int
    rows_invalid: int
    rows_warned: int
    by_code: dict[str, int]

    @property
    def rows_valid(self) -> int:
        return self.rows_total - self.rows_invalid


async def load_upload(
    connection: asyncpg.Connection, upload_id: uuid.UUID
) -> UploadToValidate | None:
    row = await connection.fetchrow(
        "SELECT upload_id, ato_id, storage_key, sha256, policy, upload_date, status"
        " FROM uploads WHERE upload_id = $1",
        upload_id,
    )
    return UploadToValidate.from_row(row) if row else None


async def start_validation(connection: asyncpg.Connection, upload_id: uuid.UUID) -> bool:
    """Marks the upload as being validated; True the first time (to publish the start once)."""
    result: str = await connection.execute(
        "UPDATE uploads SET status = 'validating', validation_started_at = now()"
        " WHERE upload_id = $1 AND status = 'received'",
        upload_id,
    )
    return result.endswith(" 1")


async def progress(connection: asyncpg.Connection, upload_id: uuid.UUID) -> Progress:
    row = await connection.fetchrow(
        "SELECT coalesce(max(row_number), 0) AS last_row, count(*) AS rows_stored,"
        " (SELECT count(*) FROM row_issues WHERE upload_id = $1) AS issues_stored"
        " FROM row_results WHERE upload_id = $1",
        upload_id,
    )
    assert row is not None
    return Progress(row["last_row"], row["rows_stored"], row["issues_stored"])


async def same_bytes_accepted(connection: asyncpg.Connection, upload: UploadToValidate) -> bool:
    """FILE_07: this ATO already has these exact bytes accepted and not withdrawn."""
    found = await connection.fetchval(
        "SELECT 1 FROM uploads WHERE ato_id = $1 AND sha256 = $2 AND upload_id <> $3"
        " AND status = ANY($4::text[]) AND withdrawn_at IS NULL LIMIT 1",
        upload.ato_id,
        upload.sha256,
        upload.upload_id,
        list(ACCEPTED_STATUSES),
    )
    return found is not None


async def store_batch(
    connection: asyncpg.Connection,
    upload_id: uuid.UUID,
    rows: Sequence[RowRecord],
    payloads: Sequence[PayloadRecord],
    issues: Sequence[IssueRecord],
    rows_processed: int,
) -> None:
    """One batch of row results, their payloads and (capped) issues, atomically with the
    progress count."""
    try:
        async with connection.transaction():
            # COPY has no ON CONFLICT, but a primary-key violation rolls the whole batch back.
            await _copy_batch(connection, _TABLES, rows, payloads, issues)
            await _set_rows_processed(connection, upload_id, rows_processed)
    except asyncpg.UniqueViolationError:
        await _store_batch_skipping_stored(
            connection, upload_id, rows, payloads, issues, rows_processed
        )


async def _store_batch_skipping_stored(
    connection: asyncpg.Connection,
    upload_id: uuid.UUID,
    rows: Sequence[RowRecord],
    payloads: Sequence[PayloadRecord],
    issues: Sequence[IssueRecord],
    rows_processed: int,
) -> None:
    """The slow path: only the rows this transaction newly stores bring their payloads and
    issues, so a row stored before keeps exactly one of each."""
    async with connection.transaction():
        await connection.execute(
            "CREATE TEMP TABLE IF NOT EXISTS staged_rows (LIKE row_results) ON COMMIT DELETE ROWS;"
            "CREATE TEMP TABLE IF NOT EXISTS staged_payloads (LIKE row_payloads)"
            " ON COMMIT DELETE ROWS;"
            "CREATE TEMP TABLE IF NOT EXISTS staged_issues (LIKE row_issues) ON COMMIT DELETE ROWS"
        )
        await _copy_batch(connection, _STAGING_TABLES, rows, payloads, issues)
        await connection.execute(
            """
            WITH taken AS (
                INSERT INTO row_results SELECT * FROM staged_rows ON CONFLICT DO NOTHING
                RETURNING upload_id, row_number
            ), payloads AS (
                INSERT INTO row_payloads
                SELECT s.* FROM staged_payloads s JOIN taken USING (upload_id, row_number)
            )
            INSERT INTO row_issues
            SELECT s.* FROM staged_issues s JOIN taken USING (upload_id, row_number)
            ON CONFLICT DO NOTHING
            """
        )
        await _set_rows_processed(connection, upload_id, rows_processed)


_TABLES = ("row_results", "row_payloads", "row_issues")
_STAGING_TABLES = ("staged_rows", "staged_payloads", "staged_issues")


async def _copy_batch(
    connection: asyncpg.Connection,
    tables: tuple[str, str, str],
    rows: Sequence[RowRecord],
    payloads: Sequence[PayloadRecord],
    issues: Sequence[IssueRecord],
) -> None:
    """COPYs a batch's row results, payloads and issues into `tables`, in that order."""
    for table, records in zip(tables, (rows, payloads, issues), strict=True):
        if records:
            await connection.copy_records_to_table(table, records=records)


async def _set_rows_processed(
    connection: asyncpg.Connection, upload_id: uuid.UUID, rows_processed: int
) -> None:
    await connection.execute(
        "UPDATE uploads SET rows_processed = $2 WHERE upload_id = $1", upload_id, rows_processed
    )


# One stored key is (course, date, kind, identifier); each kind is the `achievements` column
# that holds that identifier.
_KEYS = """
    keys AS (
        SELECT p.row_number, k.key,
               split_part(k.key, '|', 1) AS course_code,
               split_part(k.key, '|', 2)::date AS achievement_date,
               split_part(k.key, '|', 3) AS kind,
               split_part(k.key, '|', 4) AS identifier
        FROM row_payloads p, unnest(p.duplicate_keys) AS k(key)
        WHERE p.upload_id = $1
    )"""
_IN_FILE = """
    firsts AS (SELECT key, min(row_number) AS first_row FROM keys GROUP BY key),
    found AS (
        SELECT keys.row_number FROM keys JOIN firsts USING (key)
        WHERE keys.row_number > firsts.first_row
    )"""
# One branch per identifier column, so each uses that column's index.
_EARLIER_UPLOADS = (
    "\n    found AS ("
    + "\n        UNION\n".join(
        f"""
        SELECT keys.row_number FROM keys JOIN achievements a
          ON a.course_code = keys.course_code AND a.achievement_date = keys.achievement_date
         AND keys.kind = '{kind}' AND a.{kind} = keys.identifier
        WHERE a.grant_state <> 'withdrawn' AND a.upload_id <> $1
          AND a.ato_id = (SELECT ato_id FROM uploads WHERE upload_id = $1)"""
        for kind in (ULN_KIND, NI_NUMBER_KIND, CITB_ID_KIND)
    )
    + "\n    )"
)


async def _mark_duplicates(
    connection: asyncpg.Connection, upload_id: uuid.UUID, limit: int, code: Code, found: str
) -> list[int]:
    """Marks every row `found` names invalid with `code`; returns the first `limit` of them
    (the issues that still fit under the cap): a file of one learner repeated a million times
    must not bring a million row numbers into the worker."""
    rows = await connection.fetch(
        f"""
        WITH {_KEYS}, {found},
        marked AS (
            UPDATE row_results r
            SET is_valid = false, codes = r.codes || '{code}'::text
            FROM (SELECT DISTINCT row_number FROM found) d
            WHERE r.upload_id = $1 AND r.row_number = d.row_number
            RETURNING r.row_number
        )
        SELECT row_number FROM marked ORDER BY row_number LIMIT $2
        """,
        upload_id,
        limit,
    )
    return [row["row_number"] for row in rows]


async def mark_in_file_duplicates(
    connection: asyncpg.Connection, upload_id: uuid.UUID, limit: int
) -> list[int]:
    """DUP_01 over the stored keys: every row after the first that shares a key."""
    return await _mark_duplicates(connection, upload_id, limit, Code.DUP_01, _IN_FILE)


async def mark_earlier_upload_duplicates(
    connection: asyncpg.Connection, upload_id: uuid.UUID, limit: int
) -> list[int]:
    """DUP_02: a key matches an accepted, not-withdrawn achievement of another upload of the
    same ATO. Never another ATO's: whether a learner was claimed elsewhere is theirs to know
    (the grant system refuses a cross-ATO duplicate with ALREADY_CLAIMED)."""
    return await _mark_duplicates(connection, upload_id, limit, Code.DUP_02, _EARLIER_UPLOADS)


async def store_row_level_issues(
    connection: asyncpg.Connection, issues: Sequence[IssueRecord]
) -> None:
    if issues:
        await connection.executemany(
            "INSERT INTO row_issues VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            issues,
        )


async def count(connection: asyncpg.Connection, upload_id: uuid.UUID) -> Counts:
    totals = await connection.fetchrow(
        "SELECT count(*) AS total, count(*) FILTER (WHERE NOT is_valid) AS invalid,"
        " count(*) FILTER (WHERE is_valid AND has_warning) AS warned"
        " FROM row_results WHERE upload_id = $1",
        upload_id,
    )
    assert totals is not None
    by_code = {
        row["code"]: row["n"]
        for row in await connection.fetch(
            "SELECT code, count(*) AS n FROM row_results, unnest(codes) AS code"
            " WHERE upload_id = $1 GROUP BY code ORDER BY code",
            upload_id,
        )
    }
    return Counts(totals["total"], totals["invalid"], totals["warned"], by_code)


async def accept_valid_rows(
    connection: asyncpg.Connection,
    upload: UploadToValidate,
    topics: Topics,
    amendment_window_s: float,
    chunk: int,
) -> int:
    """Turns valid rows into achievements and announces them in chunks; returns how many.

    An achievement's id is the upload id's first 12 bytes (92 random bits, the version and
    variant of a v4 UUID included) then the row number: unique per (upload, row), the same on
    a redo of this transaction, and increasing with the row, so the primary key's B-tree grows
    at one edge instead of splitting pages all over.
    """
    inserted: str = await connection.execute(
        """
        INSERT INTO achievements (
            achievement_id, upload_id, row_number, ato_id, provider_reference, course_code,
            achievement_date, forename, surname, date_of_birth, uln, ni_number,
            citb_individual_id, levy_number, notes, grant_eligible, release_at, grant_state)
        SELECT encode(substring(uuid_send(p.upload_id) FROM 1 FOR 12)
                      || int4send(p.row_number), 'hex')::uuid,
               p.upload_id, p.row_number, $2, p.provider_reference, p.course_code,
               p.achievement_date, p.forename, p.surname, p.date_of_birth, p.uln, p.ni_number,
               p.citb_individual_id, p.levy_number, p.notes, p.grant_eligible,
               now() + make_interval(secs => $3),
               CASE WHEN p.grant_eligible THEN 'held' ELSE 'not_eligible' END
        FROM row_payloads p JOIN row_results r USING (upload_id, row_number)
        WHERE p.upload_id = $1 AND r.upload_id = $1 AND r.is_valid
        ORDER BY p.row_number
        ON CONFLICT (upload_id, row_number) DO NOTHING
        """,
        upload.upload_id,
        upload.ato_id,
        amendment_window_s,
    )
    accepted = int(inserted.rsplit(" ", 1)[1])
    # One round trip per event's worth of rows, not per asyncpg's default 50: a million rows
    # would otherwise cost 20,000 round trips inside the final transaction.
    cursor = connection.cursor(
        "SELECT achievement_id, row_number, grant_eligible, release_at FROM achievements"
        " WHERE upload_id = $1 ORDER BY row_number",
        upload.upload_id,
        prefetch=chunk,
    )
    batch: list[AcceptedAchievement] = []
    async for row in cursor:
        batch.append(AcceptedAchievement(**dict(row.items())))
        if len(batch) >= chunk:
            await enqueue(
                connection,
                topics,
                AchievementsAccepted(
                    upload_id=upload.upload_id, ato_id=upload.ato_id, achievements=batch
                ),
            )
            batch = []
    if batch:
        await enqueue(
            connection,
            topics,
            AchievementsAccepted(
                upload_id=upload.upload_id, ato_id=upload.ato_id, achievements=batch
            ),
        )
    return accepted


async def forget_row_payloads(connection: asyncpg.Connection, upload_id: uuid.UUID) -> None:
    """Personal data stays only where it is needed: accepted rows live on in `achievements`,
    and the identifiers in the duplicate keys are not needed once the outcome is decided."""
    await connection.execute("DELETE FROM row_payloads WHERE upload_id = $1", upload_id)


async def discard_rows(connection: asyncpg.Connection, upload_id: uuid.UUID) -> None:
    """A rejected file has no row results (section 8: counts 0, no issues)."""
    await connection.execute("DELETE FROM row_issues WHERE upload_id = $1", upload_id)
    await connection.execute("DELETE FROM row_results WHERE upload_id = $1", upload_id)
    await connection.execute("DELETE FROM row_payloads WHERE upload_id = $1", upload_id)


async def finish(
    connection: asyncpg.Connection,
    upload_id: uuid.UUID,
    *,
    status: str,
    encoding: str | None,
    counts: Counts,
    file_error_code: str | None,
    file_error_message: str | None,
) -> None:
    await connection.execute(
        """
        UPDATE uploads SET status = $2, encoding = $3, rows_total = $4, rows_valid = $5,
               rows_invalid = $6, rows_warned = $7, counts_by_code = $8,
               file_error_code = $9, file_error_message = $10, validated_at = now(),
               rows_processed = $4
        WHERE upload_id = $1
        """,
        upload_id,
        status,
        encoding,
        counts.rows_total,
        counts.rows_valid,
        counts.rows_invalid,
        counts.rows_warned,
        counts.by_code,
        file_error_code,
        file_error_message,
    )
