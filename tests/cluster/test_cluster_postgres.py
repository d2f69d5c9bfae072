"""The PostgreSQL primary of `make cluster` dies under load; the standby is promoted as an
operator (or Patroni) would, with `make cluster-failover`.

While uploads validate and claims flow, the primary's postmaster is SIGKILLed and the failover
run. The standby was synchronous, so:

- every upload ends with the counts of the offline check of the same file, the third one sent
  after the promotion included;
- every eligible achievement is claimed once at the stand-in (a claim whose answer was lost with
  the database is replayed, and the stand-in answers the replay with the stored claim);
- no service was restarted: their multi-host URL (`target_session_attrs=read-write`) found the
  new primary; the time from the promotion until the gateway, a validator and a bridge wrote
  again is printed (the target is 30 s);
- the old primary does not start again as a second primary; `make cluster-rebuild-standby`
  makes it the new primary's synchronous standby.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest

from services.core.db import TRANSIENT_ERRORS
from tests.cluster.conftest import SERVICES, Cluster
from tests.cluster.test_cluster_kafka import claims_of, eventually, status_of
from tests.e2e.conftest import Pipeline
from tests.e2e.outcomes_under_fault import (
    calls_of_claims_held_once,
    eligible_achievements,
    neither_created_once_nor_replayed,
    offline_reports,
)
from tests.e2e.test_exactly_once_claims import GeneratedFile, generate_file, ulns
from tests.e2e.test_validator_rebalance_and_pause import check_outcome
from tests.supervised import alive, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

UK = ZoneInfo("Europe/London")
ROWS = 900
# A liveness bound: the target of 30 s is reported, not asserted.
WRITING_AGAIN_WITHIN_S = 180


async def upload_when_accepted(
    pipeline: Pipeline, generated: GeneratedFile, api_key: str, timeout_s: float
) -> dict[str, Any]:
    """The upload, sent again while the gateway answers 503 (the database not reachable yet:
    nothing was stored)."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{pipeline.gateway_url}/v1/uploads",
                data=generated.body,
                params={"file_name": generated.name, "terms_accepted": "true"},
                headers={"Authorization": f"Bearer {api_key}", "Content-Type": "text/csv"},
            ) as response,
        ):
            if response.status in (200, 202):
                accepted: dict[str, Any] = await response.json()
                return accepted
            assert response.status in (502, 503), await response.text()
        assert time.monotonic() < deadline, "the gateway did not take the upload in time"
        await asyncio.sleep(0.5)


async def test_a_killed_primary_is_replaced_by_its_standby_without_loss_or_restart(
    cluster: Cluster, tmp_path: Path
) -> None:
    pipeline = cluster.pipeline()
    _, api_key = await pipeline.create_ato("Failover Training Ltd")
    today = datetime.now(UK).date()
    learners = ulns(100_000_000 + secrets.randbelow(800_000) * 1_000)
    files = [
        generate_file(f"failover-{n}.csv", ROWS, learners, empty_levy=10, not_eligible_levy=10)
        for n in (1, 2, 3)
    ]
    expected = offline_reports(files, tmp_path, today)
    before = {name: cluster.pid(name) for name in SERVICES}

    ids = [(await pipeline.upload(files[0].body, api_key, file_name=files[0].name))["upload_id"]]
    await eventually(
        lambda: _some_accepted(cluster, ids), "claims of the first upload", cluster, 180
    )
    ids.append(
        (await pipeline.upload(files[1].body, api_key, file_name=files[1].name))["upload_id"]
    )

    old = cluster.primary()
    killed = cluster.sigkill(f"postgres-{old}")
    await asyncio.to_thread(
        wait_until, lambda: not alive(killed), "the postmaster to die", 30, cluster
    )
    failover = await asyncio.to_thread(cluster.script, "failover")
    assert failover.returncode == 0, failover.stdout + failover.stderr
    promoted_at = time.monotonic()
    new = cluster.primary()
    assert new != old

    third = await upload_when_accepted(pipeline, files[2], api_key, WRITING_AGAIN_WITHIN_S)
    gateway_s = time.monotonic() - promoted_at
    ids.append(third["upload_id"])
    await eventually(
        lambda: _under_way(cluster, third["upload_id"]),
        "a validator taking the third upload",
        cluster,
        WRITING_AGAIN_WITHIN_S,
    )
    validator_s = time.monotonic() - promoted_at
    await eventually(
        lambda: _some_accepted(cluster, [third["upload_id"]]),
        "a bridge recording a claim of the third upload",
        cluster,
        WRITING_AGAIN_WITHIN_S,
    )
    bridge_s = time.monotonic() - promoted_at

    for upload_id in ids:
        await pipeline.wait_final(upload_id, api_key, timeout_s=300)
    for upload_id, report in zip(ids, expected, strict=True):
        await check_outcome(pipeline, upload_id, report)

    eligible = eligible_achievements(ids, files)

    async def settled() -> bool:
        total, _, pending = await claims_of(cluster, ids)
        return total == len(eligible) and pending == 0

    await eventually(settled, "every claim answered", cluster, 300)
    calls = await calls_of_claims_held_once(pipeline, ids, eligible)
    assert neither_created_once_nor_replayed(calls) == []

    after = {name: cluster.pid(name) for name in SERVICES}
    assert after == before, f"restarted: {[n for n in SERVICES if after[n] != before[n]]}"

    # Whoever starts the old primary, it does not come back as a second primary.
    cluster.ctl("start", f"postgres-{old}")
    assert "RUNNING" not in cluster.ctl("status", f"postgres-{old}")
    assert "does not start as a second primary" in cluster.log_tail(f"postgres-{old}", 5)

    rebuilt = await asyncio.to_thread(cluster.script, "rebuild-standby")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert f"postgres-{old} streams from postgres-{new}, synchronously" in rebuilt.stdout
    print(
        f"failover (postgres-{old} -> postgres-{new}): writing again after the promotion:"
        f" gateway {gateway_s:.1f}s, validator {validator_s:.1f}s, bridge {bridge_s:.1f}s"
        " (target 30 s)"
    )


async def _some_accepted(cluster: Cluster, ids: list[str]) -> bool:
    return (await claims_of(cluster, ids))[1] > 0


async def _under_way(cluster: Cluster, upload_id: str) -> bool:
    try:
        return await status_of(cluster, upload_id) not in (None, "received")
    except (*TRANSIENT_ERRORS, asyncpg.PostgresError):
        return False
