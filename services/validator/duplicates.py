"""The cross-row rules' database side: DUP_02 against the same ATO's earlier accepted uploads,
and reading back the keys for DUP_01 across the chunks of one file (found in memory,
`duplicate_keys`).

DUP_02 runs twice: for each chunk before its rows are written (against every upload of the ATO
accepted by then), and once more when the outcome is decided, only against the uploads of the
ATO accepted since the chunks looked (`accepted_since`). Outcomes of one ATO are serialised by
an advisory lock, so of two uploads with the same achievement finishing at once exactly one
gets DUP_02.

Plans are fixed by the queries' shape, not left to statistics of tables that fill and empty
within minutes: a chunk's check probes the duplicate indexes once per key (hash and merge
joins are switched off for that statement), except that a chunk of an ATO with fewer accepted
achievements than the chunk has keys reads those achievements instead (through the ATO's
uploads, nested loops again) and matches the keys in memory; the outcome's re-check hashes the
upload's keys against the recent uploads' achievements (nested loops off).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import polars as pl

from services.core.retention import duplicate_key_hmac
from services.core.scheme.bulk_rules import ROW_NUMBER
from services.core.scheme.validation import CITB_ID_KIND, NI_NUMBER_KIND, ULN_KIND
from services.core.settings import RetentionSettings
from services.core.states import ACCEPTING
from services.validator import duplicate_keys

_ACCEPTING = sorted(state.value for state in ACCEPTING)


def _earlier_uploads(
    keys: str,
    *,
    ato: str,
    upload: str,
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
          AND u.ato_id = {ato} AND u.status = ANY('{{{accepting}}}'::text[])"""
    branches = [
        f"""
        SELECT keys.row_number FROM {keys} JOIN achievements a
          ON a.course_code = keys.course_code AND a.achievement_date = keys.achievement_date
         AND keys.kind = '{kind}' AND a.{kind} = keys.identifier{guard}"""
        for kind in (ULN_KIND, NI_NUMBER_KIND, CITB_ID_KIND)
    ]
    if purged:
        branches.append(
            f"""
        SELECT keys.row_number FROM {keys} JOIN purged_duplicate_keys p
          ON p.ato_id = {ato} AND p.key_hmac = keys.key_hmac
        JOIN achievements a ON a.achievement_id = p.achievement_id{guard}"""
        )
    return "\n        UNION\n".join(branches)


_SPLIT_KEY = """
        split_part(key, '|', 1) AS course_code,
        split_part(key, '|', 2)::date AS achievement_date,
        split_part(key, '|', 3) AS kind,
        split_part(key, '|', 4) AS identifier"""

# A chunk's keys as two texts ($3 the row numbers, comma-separated; $4 the keys, a line each):
# no Python object per key on the way, and a key (valid cells only) holds no line break.
_CHUNK_KEYS = f"""(
        SELECT row_number, {_SPLIT_KEY}
        FROM unnest(string_to_array($3, ',')::integer[], string_to_array($4, E'\\n'))
             AS k(row_number, key)) AS keys"""
_CHUNK_EARLIER_UPLOADS = _earlier_uploads(_CHUNK_KEYS, ato="$1", upload="$2")
# The same, when the ATO has purged achievements: $5 the keys' HMACs, in the keys' order.
_CHUNK_HASHED_KEYS = f"""(
        SELECT row_number, key_hmac, {_SPLIT_KEY}
        FROM unnest(string_to_array($3, ',')::integer[], string_to_array($4, E'\\n'),
                    $5::bytea[]) AS k(row_number, key, key_hmac)
        ) AS keys"""
_CHUNK_EARLIER_UPLOADS_OR_PURGED = _earlier_uploads(
    _CHUNK_HASHED_KEYS, ato="$1", upload="$2", purged=True
)


# Each duplicate key of an achievement `a`, one row per identifier it has, as `k.key`: the
# text `validation.duplicate_key_text` writes.
# A join method switched off (`enable_*`) adds PostgreSQL's disable cost (10^10) to a plan's
# estimate, which puts the statement far above `jit_above_cost`: PostgreSQL then compiled each
# DUP_02 statement with LLVM, 1 to 2.5 s on a busy machine, for a query that ran in under a
# millisecond (a 20-row upload's re-check at its outcome). With the join methods set, the plan
# is known to be linear; nothing is gained by compiling it.
NO_JIT = "SET LOCAL jit = off"

_KEYS_OF_ACHIEVEMENT = f"""
    CROSS JOIN LATERAL (VALUES
        ('{ULN_KIND}', a.{ULN_KIND}),
        ('{NI_NUMBER_KIND}', a.{NI_NUMBER_KIND}),
        ('{CITB_ID_KIND}', a.{CITB_ID_KIND})) AS given(kind, identifier)
    CROSS JOIN LATERAL (SELECT a.course_code || '|' || to_char(a.achievement_date, 'YYYY-MM-DD')
                               || '|' || given.kind || '|' || given.identifier AS key) AS k"""

# Every duplicate key of the ATO's accepted, not-withdrawn achievements of other uploads, as
# one text (a key a line), found through the ATO's uploads and each upload's (upload, row)
# index. $1 the ATO, $2 this upload, $3 the accepting statuses.
_ATO_KEYS = f"""
    SELECT coalesce(string_agg(k.key, E'\\n'), '')
    FROM uploads u
    JOIN achievements a ON a.upload_id = u.upload_id{_KEYS_OF_ACHIEVEMENT}
    WHERE u.ato_id = $1 AND u.upload_id <> $2 AND u.status = ANY($3::text[])
      AND a.ato_id = $1 AND a.grant_state <> 'withdrawn' AND given.identifier IS NOT NULL"""


async def _ato_keys(connection: asyncpg.Connection, ato_id: str, upload_id: uuid.UUID) -> pl.Series:
    """`_ATO_KEYS` as a series to match a chunk's keys against. Called where hash and merge
    joins are off: nested loops and index probes through the ATO's uploads to their
    achievements."""
    text = await connection.fetchval(_ATO_KEYS, ato_id, upload_id, _ACCEPTING)
    return pl.Series([text], dtype=pl.String).str.split("\n").explode()


def _as_texts(keys: pl.DataFrame) -> tuple[str, str]:
    """(row numbers, keys) of a frame of `ROW_NUMBER` and `KEY`, as `_CHUNK_KEYS` reads them."""
    return (
        duplicate_keys.as_array_text(keys.get_column(ROW_NUMBER)),
        keys.get_column(duplicate_keys.KEY).str.join("\n").item(),
    )


async def chunk_earlier_upload_duplicates(
    connection: asyncpg.Connection,
    ato_id: str,
    upload_id: uuid.UUID,
    keys: pl.DataFrame,
    retention: RetentionSettings,
) -> set[int]:
    """DUP_02 for one chunk's keys (`ROW_NUMBER`, `KEY`): the row numbers whose achievement
    the ATO already has. A probe per key, or, when the ATO has no more accepted achievements
    than the chunk has keys (a new ATO's first big file), one read of them: the same rows
    either way (tested), at a fraction of the cost.

    Achievements the retention purge emptied are matched by the HMAC of their keys
    (`retention` holds the key: the validator's settings). The hashes are
    computed only when the ATO has purged keys at all: one index probe decides."""
    if not keys.height:
        return set()
    async with connection.transaction():
        # Index probes and nested loops only, whatever the planner thinks of the tables' sizes.
        # (A join method switched off costs a plan 10^10 more, so the JIT is off too: see
        # `NO_JIT`.)
        await connection.execute(
            f"SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; {NO_JIT}"
        )
        purged = await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM purged_duplicate_keys WHERE ato_id = $1)", ato_id
        )
        if not purged and await _few_earlier_achievements(connection, ato_id, upload_id, keys):
            # Reading the ATO's few achievements costs less than a probe per key (about
            # 3 µs each, a third of PostgreSQL's work on a big upload).
            known = await _ato_keys(connection, ato_id, upload_id)
            found = keys.filter(pl.col(duplicate_keys.KEY).is_in(known.implode()))
            return set(found.get_column(ROW_NUMBER).to_list())
        row_numbers, texts = _as_texts(keys)
        if purged:
            secret = retention.key_secret
            rows = await connection.fetch(
                _CHUNK_EARLIER_UPLOADS_OR_PURGED,
                ato_id,
                upload_id,
                row_numbers,
                texts,
                [
                    duplicate_key_hmac(secret, text)
                    for text in keys.get_column(duplicate_keys.KEY).to_list()
                ],
            )
        else:
            rows = await connection.fetch(
                _CHUNK_EARLIER_UPLOADS, ato_id, upload_id, row_numbers, texts
            )
    return {row["row_number"] for row in rows}


async def _few_earlier_achievements(
    connection: asyncpg.Connection, ato_id: str, upload_id: uuid.UUID, keys: pl.DataFrame
) -> bool:
    """Whether the ATO's accepted achievements (of other uploads, withdrawn ones included: an
    upper bound from the uploads' counts) are no more than the chunk's keys."""
    accepted = await connection.fetchval(
        "SELECT coalesce(sum(rows_valid), 0) FROM uploads"
        " WHERE ato_id = $1 AND upload_id <> $2 AND status = ANY($3::text[])",
        ato_id,
        upload_id,
        _ACCEPTING,
    )
    return bool(accepted <= keys.height)


async def stored_keys(connection: asyncpg.Connection, upload_id: uuid.UUID) -> list[bytes]:
    """Every chunk's stored duplicate keys (`duplicate_keys`), in chunk order."""
    values = await connection.fetch(
        "SELECT duplicate_keys FROM validation_chunks"
        " WHERE upload_id = $1 AND duplicate_keys IS NOT NULL ORDER BY chunk_no",
        upload_id,
    )
    return [row["duplicate_keys"] for row in values]


async def remove_achievements(
    connection: asyncpg.Connection, upload_id: uuid.UUID, row_numbers: pl.Series
) -> None:
    """The achievements of rows a cross-row rule took, by (upload, row): one probe per row."""
    if row_numbers.len():
        await connection.execute(
            "DELETE FROM achievements WHERE upload_id = $1"
            " AND row_number = ANY(string_to_array($2, ',')::integer[])",
            upload_id,
            duplicate_keys.as_array_text(row_numbers),
        )


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


# DUP_02's re-check at the outcome: the rows of `recheck_keys` (this upload's keys, from its
# chunks) whose key an accepted, not-withdrawn achievement of the uploads in $3 has, with their
# validity and warning, as CSV text (`row,is_valid,has_warning`, 0 or 1). The achievements are
# found by upload through the (upload, row) index (a scan, not a join), and hashed against the
# keys: nested loops are switched off for the statement.
_RECHECK = f"""
    SELECT coalesce(string_agg(format('%s,%s,%s', found.row_number, found.is_valid::int,
                                      found.has_warning::int), E'\\n'), '')
    FROM (
        SELECT DISTINCT keys.row_number, keys.is_valid, keys.has_warning
        FROM achievements a
        JOIN uploads u ON u.upload_id = a.upload_id{_KEYS_OF_ACHIEVEMENT}
        JOIN recheck_keys keys ON keys.key = k.key
        WHERE a.upload_id = ANY($3::uuid[]) AND a.ato_id = $1 AND a.grant_state <> 'withdrawn'
          AND u.ato_id = $1 AND u.upload_id <> $2 AND u.status = ANY($4::text[])
          AND given.identifier IS NOT NULL) found"""


async def mark_earlier_upload_duplicates(
    connection: asyncpg.Connection,
    ato_id: str,
    upload_id: uuid.UUID,
    stored: Sequence[bytes],
    invalid_rows: pl.Series,
    among_uploads: Sequence[uuid.UUID],
    limit: int,
) -> duplicate_keys.Marked:
    """DUP_02 against the given uploads of the ATO (those accepted since the chunks looked),
    with `invalid_rows` (DUP_01's) no longer valid.

    The keys DUP_02 has not marked yet go, chunk by chunk, into a temporary table, and one
    statement hashes them against those uploads' achievements: linear in both, whatever the
    statistics say, and the validator holds one chunk's keys at a time. (A probe per key
    restricted to those uploads let the planner drive a nested loop from their achievements
    into each chunk's keys, which ran for minutes on two 300,000-row uploads of one ATO;
    those uploads' keys held in memory took 80 MB for 300,000 achievements.)"""
    async with connection.transaction():
        await connection.execute(
            "CREATE TEMPORARY TABLE recheck_keys (row_number integer, key text,"
            " is_valid boolean, has_warning boolean) ON COMMIT DROP"
        )
        for value in stored:
            keys = duplicate_keys.not_yet_marked_by_dup_02(
                duplicate_keys.from_stored(value), invalid_rows
            )
            if keys.height:
                csv = (
                    keys.select(ROW_NUMBER, duplicate_keys.KEY, "is_valid", "has_warning")
                    .write_csv(include_header=False)
                    .encode()
                )
                await connection.copy_to_table("recheck_keys", source=io.BytesIO(csv), format="csv")
        await connection.execute(f"SET LOCAL enable_nestloop = off; {NO_JIT}")
        found = await connection.fetchval(
            _RECHECK, ato_id, upload_id, list(among_uploads), _ACCEPTING
        )
        await connection.execute("DROP TABLE recheck_keys")
    if not found:
        return duplicate_keys.summarise(duplicate_keys.empty_keys(), limit)
    rows = pl.read_csv(
        io.BytesIO(found.encode()),
        has_header=False,
        new_columns=[ROW_NUMBER, "is_valid", "has_warning"],
        schema_overrides=[pl.Int32, pl.Int8, pl.Int8],
    ).select(
        ROW_NUMBER, pl.col("is_valid").cast(pl.Boolean), pl.col("has_warning").cast(pl.Boolean)
    )
    return duplicate_keys.summarise(rows, limit)
