"""The record of the retention purge's runs (`purge_runs`): written by every run, failed ones
included (services/core/retention.py), read by the operations exporter, which turns them into
metrics (services/core/ops_exporter.py).

A run is kept as its times, its counts and, when it failed, its error's class name: nothing
read from a row, and no error message (a driver's message may quote a value).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

import asyncpg


class PurgeOutcome(StrEnum):
    """How a run ended; the words of `purge_runs.outcome`'s CHECK."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"


# What `purge_runs.error_class` accepts (its CHECK): a class name, never a message.
_CLASS_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,199}")


def error_class_name(error: BaseException) -> str:
    """The error's class name as stored: `type(error).__name__`, which the schema's CHECK
    accepts (a class made at run time with an odd name is stored as `Exception`)."""
    name = type(error).__name__
    return name if _CLASS_NAME.fullmatch(name) else "Exception"


@dataclass(frozen=True, slots=True)
class PurgeRun:
    """One run, as recorded."""

    started_at: datetime
    finished_at: datetime
    uploads_purged: int
    achievements_purged: int
    files_deleted: int
    # None: the run succeeded.
    error_class: str | None = None

    @property
    def outcome(self) -> PurgeOutcome:
        return PurgeOutcome.SUCCEEDED if self.error_class is None else PurgeOutcome.FAILED


async def record(connection: asyncpg.Connection | asyncpg.Pool, run: PurgeRun) -> int:
    """Stores one run (a statement of its own: a transaction of its own on a pool); returns its
    `run_id` (the audit trail's target of the run)."""
    run_id: int = await connection.fetchval(
        "INSERT INTO purge_runs (started_at, finished_at, outcome, uploads_purged,"
        " achievements_purged, files_deleted, error_class)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING run_id",
        run.started_at,
        run.finished_at,
        run.outcome.value,
        run.uploads_purged,
        run.achievements_purged,
        run.files_deleted,
        run.error_class,
    )
    return run_id


@dataclass(frozen=True, slots=True)
class PurgeRunsSummary:
    """Every recorded run, summed up: what the exporter's purge metrics say."""

    # The end of the last run that succeeded; None: none has.
    last_success_at: datetime | None
    # The end of the last run, and how it ended; None: no run was recorded.
    last_run_at: datetime | None
    last_outcome: PurgeOutcome | None
    # Over every run, failed ones included (what their transactions committed).
    uploads_purged: int
    achievements_purged: int
    files_deleted: int
    runs_succeeded: int
    runs_failed: int


# One table, a row a day: summed in full at every read.
_SUMMARY: Final = """
WITH last AS (
    SELECT finished_at, outcome FROM purge_runs ORDER BY finished_at DESC, run_id DESC LIMIT 1
)
SELECT
    (SELECT max(finished_at) FROM purge_runs WHERE outcome = 'succeeded') AS last_success_at,
    (SELECT finished_at FROM last) AS last_run_at,
    (SELECT outcome FROM last) AS last_outcome,
    coalesce(sum(uploads_purged), 0)::bigint AS uploads_purged,
    coalesce(sum(achievements_purged), 0)::bigint AS achievements_purged,
    coalesce(sum(files_deleted), 0)::bigint AS files_deleted,
    count(*) FILTER (WHERE outcome = 'succeeded') AS runs_succeeded,
    count(*) FILTER (WHERE outcome = 'failed') AS runs_failed
FROM purge_runs"""


async def read_summary(connection: asyncpg.Connection | asyncpg.Pool) -> PurgeRunsSummary:
    row = await connection.fetchrow(_SUMMARY)
    if row is None:  # an aggregate without GROUP BY always answers one row
        raise RuntimeError("the purge runs' summary answered no row")
    return PurgeRunsSummary(
        last_success_at=row["last_success_at"],
        last_run_at=row["last_run_at"],
        last_outcome=PurgeOutcome(row["last_outcome"]) if row["last_outcome"] else None,
        uploads_purged=row["uploads_purged"],
        achievements_purged=row["achievements_purged"],
        files_deleted=row["files_deleted"],
        runs_succeeded=row["runs_succeeded"],
        runs_failed=row["runs_failed"],
    )
