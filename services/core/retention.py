"""Personal data has an end date: the retention purge (docs/retention.md).

Once an upload's outcome (the later of `validated_at` and `withdrawn_at`) is older than
`RETENTION_DAYS`, `purge`:
- deletes its stored file, clears the masked values of its error report and replaces its file
  name (ATOs sometimes name a file after a learner) with one made of the upload id;
- then, achievement by achievement as each claim is settled (claimed, refused, withdrawn, or not
  eligible with its amendment window closed), stores the HMAC-SHA256 of each of the
  achievement's duplicate keys in `purged_duplicate_keys` (so DUP_02 still finds it) and
  replaces its personal fields with NULL.
It also erases the achievements a learner asked to be erased once their claims are settled
(`learner_requests`), and deletes `.part` files left behind by uploads that never finished.

Statuses, counts, codes, sha256 (FILE_07), grant states, amounts and timestamps stay. Each
transaction handles one bounded batch; rows are taken `FOR UPDATE SKIP LOCKED`, so two purges
running at once share the work, and a purge interrupted anywhere is finished by the next run.

Every run that changes something (not `--dry-run`) is recorded in `purge_runs`
(services/core/purge_runs.py): its times and counts, and when it failed its error's class name,
in a transaction of its own once the failed batch has rolled back. The counts are what committed.
The operations exporter reads them (a CronJob is gone before Prometheus could scrape it).
Run by an operator's command, each purged upload's audit row and the run's own (`purge_ran`,
targeting its `purge_runs` row) name the operator.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
from pydantic import SecretStr

from services.core import audit, purge_runs
from services.core.db import create_pool
from services.core.grant_states import RELEASE_AT
from services.core.logging import get_logger
from services.core.scheme.validation import (
    CITB_ID_KIND,
    NI_NUMBER_KIND,
    ULN_KIND,
    Achievement,
    duplicate_key_text,
)
from services.core.settings import CommonSettings, RetentionSettings
from services.core.states import FINAL, GrantState, sql_list, sql_literal
from services.core.storage import Storage, open_storage, sheet_csv_key

log = get_logger()

# The identifier columns, in the order of the duplicate keys' kinds.
IDENTIFIER_KINDS: Final = (ULN_KIND, NI_NUMBER_KIND, CITB_ID_KIND)
# What an achievement keeps of its row after a purge: nothing that names or identifies a
# learner. Every other field of `Achievement` is personal, so a field added later is purged
# unless it is listed here on purpose.
KEPT_FIELDS: Final = frozenset({"course_code", "achievement_date", "levy_number", "grant_eligible"})
PERSONAL_FIELDS: Final = tuple(f for f in Achievement._fields if f not in KEPT_FIELDS)

# Grant states no claim will change again; `not_eligible` joins them when its window closes.
SETTLED_GRANT_STATES: Final = frozenset(
    {GrantState.CLAIMED, GrantState.REFUSED, GrantState.WITHDRAWN}
)
# `$1` is the purge's clock.
_SETTLED = f"""(a.grant_state IN ({sql_list(SETTLED_GRANT_STATES)})
    OR (a.grant_state = {sql_literal(GrantState.NOT_ELIGIBLE)} AND {RELEASE_AT} <= $1))"""

_FINAL = sorted(state.value for state in FINAL)


def duplicate_key_hmac(secret: SecretStr, key_text: str) -> bytes:
    """The keyed hash of one duplicate key (`COURSE|DATE|KIND|ID`): what outlives the key."""
    return hmac.new(secret.get_secret_value().encode(), key_text.encode(), hashlib.sha256).digest()


def achievement_key_texts(row: asyncpg.Record) -> list[str]:
    """The duplicate keys of a stored achievement, as the validator builds them
    (`validation.duplicate_key_text`): one per identifier it has."""
    iso_date = row["achievement_date"].isoformat()
    return [
        duplicate_key_text((row["course_code"], iso_date, kind, row[kind]))
        for kind in IDENTIFIER_KINDS
        if row[kind]
    ]


# --- Erasing achievements (shared with learner_requests) ----------------------------------------

ACHIEVEMENT_KEY_COLUMNS: Final = (
    "a.achievement_id, a.upload_id, a.row_number, a.ato_id, a.grant_state, a.course_code,"
    " a.achievement_date, a.uln, a.ni_number, a.citb_individual_id"
)
_BLANK_PERSONAL = ", ".join(f"{field} = NULL" for field in PERSONAL_FIELDS)


async def erase_locked(
    connection: asyncpg.Connection,
    rows: Sequence[asyncpg.Record],
    secret: SecretStr,
    now: datetime,
) -> int:
    """Erases achievements the caller has locked (rows of `ACHIEVEMENT_KEY_COLUMNS`): the keyed
    hashes of a not-withdrawn one's duplicate keys first, then its personal fields and the
    masked values of its row's issues. Returns how many hashes were stored."""
    if not rows:
        return 0
    hashes: list[tuple[uuid.UUID, bytes, str, uuid.UUID]] = [
        (row["achievement_id"], duplicate_key_hmac(secret, text), row["ato_id"], row["upload_id"])
        for row in rows
        if row["grant_state"] != GrantState.WITHDRAWN
        for text in achievement_key_texts(row)
    ]
    if hashes:
        await connection.execute(
            "INSERT INTO purged_duplicate_keys (achievement_id, key_hmac, ato_id, upload_id)"
            " SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::text[], $4::uuid[])"
            " ON CONFLICT DO NOTHING",
            *(list(column) for column in zip(*hashes, strict=True)),
        )
    await connection.execute(
        f"UPDATE achievements SET {_BLANK_PERSONAL}, purged_at = $2"
        " WHERE achievement_id = ANY($1::uuid[])",
        [row["achievement_id"] for row in rows],
        now,
    )
    await connection.execute(
        "UPDATE row_issues i SET masked_value = NULL"
        " FROM unnest($1::uuid[], $2::integer[]) AS r (upload_id, row_number)"
        " WHERE i.upload_id = r.upload_id AND i.row_number = r.row_number"
        " AND i.masked_value IS NOT NULL",
        [row["upload_id"] for row in rows],
        [row["row_number"] for row in rows],
    )
    return len(hashes)


# --- The purge -----------------------------------------------------------------------------------


@dataclass(slots=True)
class PurgeReport:
    """What one run did (or, in a dry run, would do); counts only."""

    dry_run: bool
    cutoff: str  # uploads whose outcome is older than this
    uploads_purged: int = 0
    files_deleted: int = 0
    masked_values_cleared: int = 0
    achievements_purged: int = 0
    duplicate_keys_hashed: int = 0
    part_files_deleted: int = 0
    sent_events_deleted: int = 0
    processed_events_deleted: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_OUTCOME_AT = "greatest(u.validated_at, u.withdrawn_at)"
# $1 the cutoff, $2 the final states.
_UPLOADS_DUE = f"""
FROM uploads u
WHERE u.purged_at IS NULL AND {_OUTCOME_AT} < $1 AND u.status = ANY($2::text[])"""
# $3 the batch size.
_LOCK_UPLOADS_DUE = f"""
SELECT u.upload_id, u.ato_id, u.storage_key {_UPLOADS_DUE}
ORDER BY {_OUTCOME_AT} LIMIT $3
FOR UPDATE SKIP LOCKED"""

# $1 the clock, $2 the batch size, $3 the upload, $4 the last row number seen.
_LOCK_SETTLED_OF_UPLOAD = f"""
SELECT {ACHIEVEMENT_KEY_COLUMNS} FROM achievements a
WHERE a.upload_id = $3 AND a.row_number > $4 AND a.purged_at IS NULL AND {_SETTLED}
ORDER BY a.row_number LIMIT $2
FOR UPDATE SKIP LOCKED"""
# $1 the clock, $2 the batch size.
_LOCK_SETTLED_ERASE_REQUESTED = f"""
SELECT {ACHIEVEMENT_KEY_COLUMNS} FROM achievements a
WHERE a.erase_requested_at IS NOT NULL AND a.purged_at IS NULL AND {_SETTLED}
ORDER BY a.achievement_id LIMIT $2
FOR UPDATE SKIP LOCKED"""


async def delete_files(storage: Storage, storage_keys: Iterable[str]) -> int:
    """Deletes uploads' stored files (a missing one is fine) and, with each, the CSV object
    written for a guided workbook's sheet (`sheet_csv_key`; none for a CSV upload); returns how
    many upload files were there."""
    deleted = 0
    for key in storage_keys:
        await storage.delete(sheet_csv_key(key))
        deleted += await storage.delete(key)
    return deleted


async def _purge_uploads(
    pool: asyncpg.Pool,
    storage: Storage,
    settings: RetentionSettings,
    cutoff: datetime,
    now: datetime,
    report: PurgeReport,
    operator_id: uuid.UUID | None,
) -> None:
    while True:
        async with pool.acquire() as connection, connection.transaction():
            due = await connection.fetch(
                _LOCK_UPLOADS_DUE, cutoff, _FINAL, settings.upload_batch_size
            )
            if not due:
                return
            ids = [row["upload_id"] for row in due]
            # Inside the transaction: if it does not commit, the next run deletes nothing twice
            # (a missing file is fine) and marks the uploads then.
            report.files_deleted += await delete_files(storage, [row["storage_key"] for row in due])
            cleared: str = await connection.execute(
                "UPDATE row_issues SET masked_value = NULL"
                " WHERE upload_id = ANY($1::uuid[]) AND masked_value IS NOT NULL",
                ids,
            )
            report.masked_values_cleared += int(cleared.rsplit(" ", 1)[1])
            # Chunk tasks hold duplicate keys; they go with the outcome, or with the next idle
            # validator when a worker died just after it. None may outlive the retention period.
            await connection.execute(
                "DELETE FROM validation_chunks WHERE upload_id = ANY($1::uuid[])", ids
            )
            await connection.execute(
                "UPDATE uploads SET purged_at = $2, file_name = upload_id::text || '.csv'"
                " WHERE upload_id = ANY($1::uuid[])",
                ids,
                now,
            )
            await audit.record_many(
                connection,
                audit.AuditKind.UPLOAD_PURGED,
                [r["ato_id"] for r in due],
                ids,
                now,
                operator_id=operator_id,
            )
        # Counted once committed: a failed run's record says what it did.
        report.uploads_purged += len(due)
        if len(due) < settings.upload_batch_size:
            return


async def _purge_achievements_of(
    pool: asyncpg.Pool,
    settings: RetentionSettings,
    upload_id: uuid.UUID,
    now: datetime,
    report: PurgeReport,
) -> None:
    """The settled achievements of one purged upload, a batch per transaction in row order;
    the upload is marked done once none of its achievements holds personal data."""
    last_row = 0
    while True:
        async with pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                _LOCK_SETTLED_OF_UPLOAD, now, settings.batch_size, upload_id, last_row
            )
            hashed = await erase_locked(connection, rows, settings.key_secret, now)
        report.duplicate_keys_hashed += hashed
        report.achievements_purged += len(rows)
        if len(rows) < settings.batch_size:
            break
        last_row = rows[-1]["row_number"]
    async with pool.acquire() as connection:
        await connection.execute(
            "UPDATE uploads SET achievements_purged_at = $2"
            " WHERE upload_id = $1 AND achievements_purged_at IS NULL AND NOT EXISTS ("
            " SELECT 1 FROM achievements a WHERE a.upload_id = $1 AND a.purged_at IS NULL)",
            upload_id,
            now,
        )


async def _purge_achievements(
    pool: asyncpg.Pool, settings: RetentionSettings, now: datetime, report: PurgeReport
) -> None:
    after = uuid.UUID(int=0)
    while True:
        async with pool.acquire() as connection:
            uploads = await connection.fetch(
                "SELECT upload_id FROM uploads WHERE purged_at IS NOT NULL"
                " AND achievements_purged_at IS NULL AND upload_id > $1"
                " ORDER BY upload_id LIMIT $2",
                after,
                settings.batch_size,
            )
        for row in uploads:
            await _purge_achievements_of(pool, settings, row["upload_id"], now, report)
        if len(uploads) < settings.batch_size:
            break
        after = uploads[-1]["upload_id"]
    # Learners who asked to be erased while their claims were under way.
    while True:
        async with pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(_LOCK_SETTLED_ERASE_REQUESTED, now, settings.batch_size)
            hashed = await erase_locked(connection, rows, settings.key_secret, now)
        report.duplicate_keys_hashed += hashed
        report.achievements_purged += len(rows)
        if len(rows) < settings.batch_size:
            break


async def _preview(
    pool: asyncpg.Pool,
    storage: Storage,
    settings: RetentionSettings,
    cutoff: datetime,
    now: datetime,
    report: PurgeReport,
) -> None:
    """What a run now would do, changing nothing (hashes are not counted)."""
    async with pool.acquire() as connection:
        due = await connection.fetch(f"SELECT u.storage_key {_UPLOADS_DUE}", cutoff, _FINAL)
        report.uploads_purged = len(due)
        report.files_deleted = sum([await storage.exists(row["storage_key"]) for row in due])
        report.masked_values_cleared = await connection.fetchval(
            f"SELECT count(*) FROM row_issues i WHERE i.masked_value IS NOT NULL"
            f" AND i.upload_id IN (SELECT u.upload_id {_UPLOADS_DUE})",
            cutoff,
            _FINAL,
        )
        report.achievements_purged = await connection.fetchval(
            f"""SELECT count(*) FROM achievements a JOIN uploads u ON u.upload_id = a.upload_id
            WHERE a.purged_at IS NULL AND {_SETTLED} AND (a.erase_requested_at IS NOT NULL
              OR u.purged_at IS NOT NULL
              OR ({_OUTCOME_AT} < $2 AND u.status = ANY($3::text[])))""",
            now,
            cutoff,
            _FINAL,
        )
    report.part_files_deleted = await storage.remove_stale_parts(
        now.timestamp() - settings.part_file_max_age_s, delete=False
    )


async def purge(
    pool: asyncpg.Pool,
    storage: Storage,
    settings: RetentionSettings,
    now: datetime,
    *,
    dry_run: bool = False,
    operator_id: uuid.UUID | None = None,
) -> PurgeReport:
    """One retention run at `now` (the injected clock; `datetime.now(UTC)` in production),
    recorded in `purge_runs` as started at `now` and finished when it ends (`now` plus the
    time it took), whether it succeeded or raised, and in the audit trail as `operator_id`'s
    when given. A dry run changes nothing and is not recorded."""
    cutoff = now - settings.period
    report = PurgeReport(dry_run=dry_run, cutoff=cutoff.isoformat())
    if dry_run:
        await _preview(pool, storage, settings, cutoff, now, report)
        return report
    started = time.monotonic()
    try:
        await _purge_uploads(pool, storage, settings, cutoff, now, report, operator_id)
        await _purge_achievements(pool, settings, now, report)
        report.part_files_deleted = await storage.remove_stale_parts(
            now.timestamp() - settings.part_file_max_age_s, delete=True
        )
        await _purge_work_rows(pool, settings, now, report)
    except Exception as error:
        # The batch in hand has rolled back (its transaction ended with the error); the
        # failure goes in on its own, and the error goes on to the caller whatever happens.
        failed = _run_of(report, now, started, purge_runs.error_class_name(error))
        log.error("purge_failed", error=failed.error_class, **_counts(failed))
        try:
            await _record_run(pool, failed, operator_id)
        except Exception as unrecorded:
            log.error("purge_run_not_recorded", error=type(unrecorded).__name__)
        raise
    # The caller reports a success (the command prints the report): recorded, not logged.
    await _record_run(pool, _run_of(report, now, started, None), operator_id)
    return report


async def _record_run(
    pool: asyncpg.Pool, run: purge_runs.PurgeRun, operator_id: uuid.UUID | None
) -> None:
    """The run in `purge_runs` and, run by an operator, its audit row, in one transaction."""
    async with pool.acquire() as connection, connection.transaction():
        run_id = await purge_runs.record(connection, run)
        if operator_id is not None:
            await audit.record_operator_action(
                connection,
                audit.AuditKind.PURGE_RAN,
                operator_id,
                audit.Target(purge_run_id=run_id),
                run.started_at,
            )


# Work rows, not learner data: what the pipeline needs only for a while. Deleted a batch per
# statement, so a backlog of a million rows never holds one long transaction.
_DELETE_SENT_EVENTS = """
    DELETE FROM outbox WHERE id IN (
        SELECT id FROM outbox WHERE sent_at < $1 ORDER BY id LIMIT $2)
"""
_DELETE_PROCESSED_EVENTS = """
    DELETE FROM processed_events WHERE (consumer, event_id) IN (
        SELECT consumer, event_id FROM processed_events WHERE processed_at < $1 LIMIT $2)
"""


async def _purge_work_rows(
    pool: asyncpg.Pool, settings: RetentionSettings, now: datetime, report: PurgeReport
) -> None:
    """Sent outbox rows once Kafka has held them a while, and the consumers' processed-event
    records once no redelivery can bring their events back (older than the topics keep)."""
    for statement, kept_s, field in (
        (_DELETE_SENT_EVENTS, settings.sent_events_kept_s, "sent_events_deleted"),
        (
            _DELETE_PROCESSED_EVENTS,
            settings.processed_events_kept_s,
            "processed_events_deleted",
        ),
    ):
        before = now - timedelta(seconds=kept_s)
        while True:
            async with pool.acquire() as connection:
                status = await connection.execute(statement, before, settings.work_batch_size)
            deleted = int(status.split()[-1])
            setattr(report, field, getattr(report, field) + deleted)
            if deleted < settings.work_batch_size:
                break


def _run_of(
    report: PurgeReport, now: datetime, started: float, error_class: str | None
) -> purge_runs.PurgeRun:
    return purge_runs.PurgeRun(
        started_at=now,
        finished_at=now + timedelta(seconds=max(0.0, time.monotonic() - started)),
        uploads_purged=report.uploads_purged,
        achievements_purged=report.achievements_purged,
        files_deleted=report.files_deleted,
        error_class=error_class,
    )


def _counts(run: purge_runs.PurgeRun) -> dict[str, int]:
    return {
        "uploads_purged": run.uploads_purged,
        "achievements_purged": run.achievements_purged,
        "files_deleted": run.files_deleted,
    }


async def purge_command(
    common: CommonSettings,
    retention: RetentionSettings,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """`achievements purge [--dry-run]`: one run against the configured database and storage."""
    pool = await create_pool(common.postgres)
    storage = open_storage(common.storage)
    try:
        report = await purge(
            pool,
            storage,
            retention,
            now or datetime.now(UTC),
            dry_run=dry_run,
        )
    finally:
        await pool.close()
    return report.to_json()
