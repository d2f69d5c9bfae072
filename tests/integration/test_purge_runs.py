"""Every retention purge run is recorded in `purge_runs`: a success with its times and counts, a
failure with what its committed batches did and its error's class name (in a transaction of its
own, after the failed batch rolled back), never a value from a row; a dry run not at all."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.core import purge_runs
from services.core.purge_runs import PurgeRun
from services.core.retention import purge
from services.core.settings import RetentionSettings
from services.core.storage import FolderStorage
from tests.integration.test_retention import (
    LEARNER_ROW,
    NEEDLES,
    OTHER_ROW,
    SETTINGS,
    accept,
    after_retention,
    csv_file,
    settle_claims,
    where_found,
)

pytestmark = pytest.mark.stack

RECORDED_RUNS = (
    "SELECT started_at, finished_at, outcome, uploads_purged, achievements_purged,"
    " files_deleted, error_class FROM purge_runs ORDER BY run_id"
)


async def recorded_runs(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    async with pool.acquire() as connection:
        rows = await connection.fetch(RECORDED_RUNS)
    return [dict(row) for row in rows]


class StorageThatFailsAfter(FolderStorage):
    """The upload folder, whose deletes of uploads' files fail after the first `deletes` (a
    volume gone read-only in the middle of a run). The delete of a workbook's sheet CSV, tried
    with every upload's (a CSV upload has none), is not counted."""

    def __init__(self, root: Path, deletes: int) -> None:
        super().__init__(root)
        self._left = deletes

    async def delete(self, storage_key: str) -> bool:
        if storage_key.endswith(".sheet.csv"):
            return await super().delete(storage_key)
        if self._left == 0:
            raise PermissionError(13, "Permission denied")
        self._left -= 1
        return await super().delete(storage_key)


async def test_a_successful_run_is_recorded_with_its_times_and_counts(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    upload = await accept(pool, tmp_path, csv_file(LEARNER_ROW, OTHER_ROW))
    await settle_claims(pool, upload["upload_id"])
    storage = FolderStorage(tmp_path)
    now = after_retention(upload)

    await purge(pool, storage, SETTINGS, now, dry_run=True)
    assert await recorded_runs(pool) == []  # a dry run changes nothing, records nothing

    report = await purge(pool, storage, SETTINGS, now)

    assert (report.uploads_purged, report.achievements_purged, report.files_deleted) == (1, 2, 1)
    [run] = await recorded_runs(pool)
    finished_at = run.pop("finished_at")
    assert now <= finished_at < now + timedelta(minutes=1)
    assert run == {
        "started_at": now,
        "outcome": "succeeded",
        "uploads_purged": 1,
        "achievements_purged": 2,
        "files_deleted": 1,
        "error_class": None,
    }


async def test_a_failed_run_is_recorded_with_what_it_committed_and_its_error_class(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    first = await accept(pool, tmp_path, csv_file(LEARNER_ROW))
    second = await accept(
        pool,
        tmp_path,
        csv_file(LEARNER_ROW.replace("12/11/2026", "05/11/2026")),
        ato_id=first["ato_id"],
    )
    for upload in (first, second):
        await settle_claims(pool, upload["upload_id"])
    now = max(after_retention(first), after_retention(second))
    # One upload per transaction: the first batch commits, the second fails on its delete.
    one_by_one = RetentionSettings(days=30, batch_size=2, upload_batch_size=1)

    with pytest.raises(PermissionError):
        await purge(pool, StorageThatFailsAfter(tmp_path, deletes=1), one_by_one, now)

    [failed] = await recorded_runs(pool)
    assert failed["outcome"] == "failed"
    assert failed["error_class"] == "PermissionError"
    assert failed["started_at"] == now
    # The first upload's batch committed (its file deleted, the upload marked); the second's
    # rolled back; the achievements were not reached.
    assert (failed["uploads_purged"], failed["files_deleted"], failed["achievements_purged"]) == (
        1,
        1,
        0,
    )
    async with pool.acquire() as connection:
        marked = await connection.fetchval(
            "SELECT count(*) FROM uploads WHERE purged_at IS NOT NULL"
        )
    assert marked == 1

    # The next run finishes the work, and is recorded beside the failure.
    report = await purge(pool, FolderStorage(tmp_path), one_by_one, now + timedelta(hours=1))
    assert (report.uploads_purged, report.files_deleted, report.achievements_purged) == (1, 1, 2)
    runs = await recorded_runs(pool)
    assert [(r["outcome"], r["uploads_purged"], r["error_class"]) for r in runs] == [
        ("failed", 1, "PermissionError"),
        ("succeeded", 1, None),
    ]
    # Nothing of the learners anywhere, purge_runs included.
    assert await where_found(pool, NEEDLES) == []


async def test_the_schema_keeps_an_error_message_out_of_purge_runs(pool: asyncpg.Pool) -> None:
    now = datetime.fromisoformat("2026-12-07T02:30:00+00:00")
    message = PurgeRun(now, now, 0, 0, 0, error_class="ULN 1000000043 failed its check digit")
    with pytest.raises(asyncpg.CheckViolationError):
        await purge_runs.record(pool, message)
    assert await recorded_runs(pool) == []


async def test_the_summary_sums_every_run_and_names_the_last(pool: asyncpg.Pool) -> None:
    day = datetime.fromisoformat("2026-12-05T02:30:00+00:00")
    runs = [
        PurgeRun(day, day + timedelta(seconds=60), 3, 40, 3),
        PurgeRun(day + timedelta(days=1), day + timedelta(days=1, seconds=30), 2, 10, 2),
        PurgeRun(
            day + timedelta(days=2),
            day + timedelta(days=2, seconds=5),
            1,
            0,
            1,
            error_class="TooManyConnectionsError",
        ),
    ]
    assert (await purge_runs.read_summary(pool)).last_success_at is None
    for run in runs:
        await purge_runs.record(pool, run)

    summary = await purge_runs.read_summary(pool)

    assert summary == purge_runs.PurgeRunsSummary(
        last_success_at=datetime.fromisoformat("2026-12-06T02:30:30+00:00"),
        last_run_at=datetime.fromisoformat("2026-12-07T02:30:05+00:00"),
        last_outcome=purge_runs.PurgeOutcome.FAILED,
        uploads_purged=6,
        achievements_purged=50,
        files_deleted=6,
        runs_succeeded=2,
        runs_failed=1,
    )
