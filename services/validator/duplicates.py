"""The cross-row rules in PostgreSQL: DUP_01 across the chunks of one file, DUP_02 against the
same ATO's earlier accepted uploads.

DUP_02 runs twice: for each chunk before its rows are written (against every upload of the ATO
accepted by then), and once more when the outcome is decided, only against the uploads of the
ATO accepted since the chunks looked (`accepted_since`). Outcomes of one ATO are serialised by
an advisory lock, so of two uploads with the same achievement finishing at once exactly one
gets DUP_02.

Plans are fixed by the queries' shape, not left to statistics of tables that fill and empty
within minutes: the chunk check probes the duplicate indexes once per key (hash and merge joins
are switched off for that statement), and DUP_01 is one sort of this upload's keys.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.core.retention import duplicate_key_hmac
from services.core.scheme.validation import CITB_ID_KIND, NI_NUMBER_KIND, ULN_KIND
from services.core.settings import RetentionSettings
from services.core.states import ACCEPTING

_ACCEPTING = sorted(state.value for state in ACCEPTING)


def _earlier_uploads(
    keys: str,
    *,
    ato: str,
    upload: str,
    extra: str = "",
    columns: str = "keys.row_number",
    purged: bool = False,
) -> str:
    """Rows of `keys` (row_number, course_code, achievement_date, kind, identifier) that match
    an accepted, not-withdrawn achievement of another upload of the ATO. One branch per
    identifier column, so each probes that column's index.

    With `purged`, `keys` also has `key_hmac` (the key's HMAC, `retention.duplicate_key_hmac`)
    and one more branch finds the achievements whose identifiers the retention purge replaced
    by those hashes (`purged_duplicate_keys`, probed by (ATO, hash)); the achievement row
    itself still decides whether it counts, as in the other branches."""
    accepting = ",".join(_ACCEPTING)
    guard = f"""
        JOIN uploads u ON u.upload_id = a.upload_id
        WHERE a.grant_state <> 'withdrawn' AND a.ato_id = {ato} AND a.upload_id <> {upload}
          AND u.ato_id = {ato} AND u.status = ANY('{{{accepting}}}'::text[]){extra}"""
    branches = [
        f"""
        SELECT {columns} FROM {keys} JOIN achievements a
          ON a.course_code = keys.course_code AND a.achievement_date = keys.achievement_date
         AND keys.kind = '{kind}' AND a.{kind} = keys.identifier{guard}"""
        for kind in (ULN_KIND, NI_NUMBER_KIND, CITB_ID_KIND)
    ]
    if purged:
        branches.append(
            f"""
        SELECT {columns} FROM {keys} JOIN purged_duplicate_keys p
          ON p.ato_id = {ato} AND p.key_hmac = keys.key_hmac
        JOIN achievements a ON a.achievement_id = p.achievement_id{guard}"""
        )
    return "\n        UNION\n".join(branches)


_SPLIT_KEY = """
        split_part(key, '|', 1) AS course_code,
        split_part(key, '|', 2)::date AS achievement_date,
        split_part(key, '|', 3) AS kind,
        split_part(key, '|', 4) AS identifier"""

_CHUNK_KEYS = f"""(
        SELECT row_number, {_SPLIT_KEY}
        FROM unnest($3::integer[], $4::text[]) AS k(row_number, key)) AS keys"""
_CHUNK_EARLIER_UPLOADS = _earlier_uploads(_CHUNK_KEYS, ato="$1", upload="$2")
# The same, when the ATO has purged achievements: $5 the keys' HMACs, in the keys' order.
_CHUNK_HASHED_KEYS = f"""(
        SELECT row_number, key_hmac, {_SPLIT_KEY}
        FROM unnest($3::integer[], $4::text[], $5::bytea[]) AS k(row_number, key, key_hmac)
        ) AS keys"""
_CHUNK_EARLIER_UPLOADS_OR_PURGED = _earlier_uploads(
    _CHUNK_HASHED_KEYS, ato="$1", upload="$2", purged=True
)


async def chunk_earlier_upload_duplicates(
    connection: asyncpg.Connection,
    ato_id: str,
    upload_id: uuid.UUID,
    keys: Sequence[tuple[int, str]],
    retention: RetentionSettings | None = None,
) -> set[int]:
    """DUP_02 for one chunk's keys: the row numbers whose achievement the ATO already has.

    Achievements the retention purge emptied are matched by the HMAC of their keys
    (`retention` holds the key; read from the environment when not given). The hashes are
    computed only when the ATO has purged keys at all: one index probe decides."""
    if not keys:
        return set()
    async with connection.transaction():
        # One index probe per key, whatever the planner thinks of `achievements`' size.
        await connection.execute(
            "SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"
        )
        row_numbers = [row for row, _ in keys]
        texts = [key for _, key in keys]
        if await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM purged_duplicate_keys WHERE ato_id = $1)", ato_id
        ):
            secret = (retention or _retention_from_environment()).key_secret
            rows = await connection.fetch(
                _CHUNK_EARLIER_UPLOADS_OR_PURGED,
                ato_id,
                upload_id,
                row_numbers,
                texts,
                [duplicate_key_hmac(secret, text) for text in texts],
            )
        else:
            rows = await connection.fetch(
                _CHUNK_EARLIER_UPLOADS, ato_id, upload_id, row_numbers, texts
            )
    return {row["row_number"] for row in rows}


@functools.cache
def _retention_from_environment() -> RetentionSettings:
    return RetentionSettings()


@dataclass(frozen=True, slots=True)
class Marked:
    """What marking a rule's rows did to the counts."""

    rows: int  # rows the rule marks (each counts once for the code)
    newly_invalid: int  # of them, rows that were valid until now
    warned_lost: int  # of those, rows that carried a warning (no longer counted as warned)
    first_rows: list[int]  # the first `limit` marked rows, for the stored issues
    were_valid: list[int]  # the rows that were valid (their achievements are gone)


# A stored key with what the marking needs of its row; a row DUP_02 marked already (when its
# chunk was validated) is left out of DUP_02's re-check.
_STORED_KEYS = f"""(
        SELECT row_number, is_valid, has_warning, {_SPLIT_KEY}
        FROM row_keys WHERE upload_id = $1 AND NOT dup_02) AS keys"""

# Every row after the first that shares a key; one sort of the upload's keys, no join.
_IN_FILE = """
        SELECT row_number, is_valid, has_warning FROM (
            SELECT row_number, is_valid, has_warning,
                   min(row_number) OVER (PARTITION BY key) AS first_row
            FROM row_keys WHERE upload_id = $1) ordered
        WHERE row_number > first_row"""

_EARLIER = _earlier_uploads(
    _STORED_KEYS,
    ato="$3",
    upload="$1",
    extra=" AND a.upload_id = ANY($4)",
    columns="keys.row_number, keys.is_valid, keys.has_warning",
)


def _summary(found: str) -> str:
    """What marking the rows `found` names ($1 the upload, $2 how many row numbers to return
    for the stored issues) does: one row per marked row, its validity as it was."""
    return f"""
    WITH marked AS (SELECT DISTINCT row_number, is_valid, has_warning FROM ({found}) found)
    SELECT count(*) AS rows,
           count(*) FILTER (WHERE is_valid) AS newly_invalid,
           count(*) FILTER (WHERE is_valid AND has_warning) AS warned_lost,
           coalesce(array_agg(row_number), '{{}}') AS marked,
           coalesce(array_agg(row_number) FILTER (WHERE is_valid), '{{}}') AS were_valid,
           (SELECT coalesce(array_agg(row_number ORDER BY row_number), '{{}}')
              FROM (SELECT row_number FROM marked ORDER BY row_number LIMIT $2) first)
              AS first_rows
    FROM marked"""


async def _mark(
    connection: asyncpg.Connection,
    upload_id: uuid.UUID,
    summary: asyncpg.Record | None,
    *,
    dup_02: bool,
) -> Marked:
    """Applies a summary: the marked rows' keys no longer valid (and DUP_02-marked), their
    achievements gone. By row numbers through the (upload, row) indexes: one probe per row,
    whatever the statistics of tables that filled a minute ago say."""
    assert summary is not None
    if summary["rows"]:
        await connection.execute(
            "UPDATE row_keys SET is_valid = false, dup_02 = dup_02 OR $3"
            " WHERE upload_id = $1 AND row_number = ANY($2::integer[])",
            upload_id,
            summary["marked"],
            dup_02,
        )
        await connection.execute(
            "DELETE FROM achievements WHERE upload_id = $1 AND row_number = ANY($2::integer[])",
            upload_id,
            summary["were_valid"],
        )
    return Marked(
        summary["rows"],
        summary["newly_invalid"],
        summary["warned_lost"],
        list(summary["first_rows"]),
        list(summary["were_valid"]),
    )


_SUMMARY_IN_FILE = _summary(_IN_FILE)
_SUMMARY_EARLIER = _summary(_EARLIER)


async def mark_in_file_duplicates(
    connection: asyncpg.Connection, upload_id: uuid.UUID, limit: int
) -> Marked:
    """DUP_01: every row after the first that shares a key (the first counts even if invalid)."""
    summary = await connection.fetchrow(_SUMMARY_IN_FILE, upload_id, limit)
    return await _mark(connection, upload_id, summary, dup_02=False)


async def uploads_accepted_since(
    connection: asyncpg.Connection, ato_id: str, upload_id: uuid.UUID, since: datetime
) -> list[uuid.UUID]:
    """The ATO's other uploads accepted since `since`: the ones a chunk may not have seen."""
    rows = await connection.fetch(
        "SELECT upload_id FROM uploads WHERE ato_id = $1 AND upload_id <> $2"
        " AND status = ANY($3::text[]) AND validated_at >= $4",
        ato_id,
        upload_id,
        list(_ACCEPTING),
        since,
    )
    return [row["upload_id"] for row in rows]


async def mark_earlier_upload_duplicates(
    connection: asyncpg.Connection,
    ato_id: str,
    upload_id: uuid.UUID,
    limit: int,
    among_uploads: Sequence[uuid.UUID],
) -> Marked:
    """DUP_02 against the given uploads of the ATO (those accepted since the chunks looked).
    Hash joins only: a nested loop over this upload's keys and those uploads' achievements,
    which stale statistics could pick, would be quadratic."""
    async with connection.transaction():
        await connection.execute("SET LOCAL enable_nestloop = off")
        summary = await connection.fetchrow(
            _SUMMARY_EARLIER, upload_id, limit, ato_id, list(among_uploads)
        )
    return await _mark(connection, upload_id, summary, dup_02=True)
