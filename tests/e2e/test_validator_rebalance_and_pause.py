"""Validators joining and stalling mid-upload: a third validator joining the group (a
rebalance), and one paused with SIGSTOP beyond its chunk lease and the group's session timeout.
Each upload ends with one outcome event, one achievement per valid row and the offline check's
counts."""

from __future__ import annotations

import asyncio
import signal
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from services.core.scheme.check import CheckReport, check_file
from services.core.scheme.codes import Policy
from tests.e2e.conftest import Pipeline
from tests.e2e.test_validator_crash import progress, write_file


async def check_outcome(pipeline: Pipeline, upload_id: str, expected: CheckReport) -> None:
    connection = await asyncpg.connect(pipeline.database_url)
    try:
        upload = await connection.fetchrow("SELECT * FROM uploads WHERE upload_id = $1", upload_id)
        achievements = await connection.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT row_number) AS distinct_rows"
            " FROM achievements WHERE upload_id = $1",
            upload_id,
        )
        outcome_events = await connection.fetchval(
            "SELECT count(*) FROM outbox WHERE payload::json->>'event_type' = 'upload.validated'"
            " AND payload::json->>'upload_id' = $1",
            upload_id,
        )
    finally:
        await connection.close()
    assert upload["status"] == str(expected.status)
    for field in ("rows_total", "rows_valid", "rows_invalid", "rows_warned"):
        assert upload[field] == getattr(expected, field), field
    assert achievements["n"] == achievements["distinct_rows"] == expected.rows_valid
    assert outcome_events == 1


async def wait_for_rows(pipeline: Pipeline, upload_id: str, rows: int) -> None:
    # Polls another process's progress; there is nothing to await in this one.
    while (await progress(pipeline.database_url, upload_id))[1] < rows:
        await asyncio.sleep(0.02)


async def big_upload_under_way(
    make_pipeline: Any, tmp_path: Path, **env: str
) -> tuple[Pipeline, str, str, CheckReport]:
    """A 200,000-row upload 40,000 rows into validation: (pipeline, upload id, key, expected)."""
    today = datetime.now(ZoneInfo("Europe/London")).date()
    path = tmp_path / "big.csv"
    write_file(path, today)
    expected = check_file(path, today=today, policy=Policy.VALID_ROWS)
    pipeline: Pipeline = await make_pipeline(bridges=0, VALIDATOR_CHUNK_ROWS="5000", **env)
    _, api_key = await pipeline.create_ato()
    accepted = await pipeline.upload(path.read_bytes(), api_key, policy="valid_rows")
    await wait_for_rows(pipeline, accepted["upload_id"], 40_000)
    return pipeline, accepted["upload_id"], api_key, expected


@pytest.mark.slow
async def test_a_validator_joining_mid_upload_changes_no_outcome(
    make_pipeline: Any, tmp_path: Path
) -> None:
    pipeline, upload_id, api_key, expected = await big_upload_under_way(make_pipeline, tmp_path)
    log_dir = pipeline.services["validator-1"].log_path.parent
    pipeline.add(
        "validator-3", "services.validator", log_dir, VALIDATOR_WORKER_NAME="validator-3"
    ).start()
    await pipeline.wait_final(upload_id, api_key, timeout_s=300)

    await check_outcome(pipeline, upload_id, expected)


@pytest.mark.slow
async def test_a_validator_paused_past_its_lease_and_session_writes_nothing_twice(
    make_pipeline: Any, tmp_path: Path
) -> None:
    pipeline, upload_id, api_key, expected = await big_upload_under_way(
        make_pipeline, tmp_path, VALIDATOR_CHUNK_LEASE_S="3"
    )
    paused = pipeline.services["validator-1"].process
    assert paused is not None
    paused.send_signal(signal.SIGSTOP)
    try:
        # Past the 3 s lease and the 10 s session timeout: its chunk and partitions move on.
        await asyncio.sleep(12)
    finally:
        paused.send_signal(signal.SIGCONT)
    await pipeline.wait_final(upload_id, api_key, timeout_s=300)
    await asyncio.sleep(3)  # the resumed worker's late writes, if any, would land now

    await check_outcome(pipeline, upload_id, expected)
