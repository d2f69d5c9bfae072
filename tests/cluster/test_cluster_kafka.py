"""A Kafka broker of `make cluster` dies under load: the pipeline rides it out on the other two.

While three uploads validate and claims flow to the grant stand-in, the broker that leads the
most partitions of the uploads and accepted-achievements topics is SIGKILLed and kept down (its
supervisor entry stopped); the third upload is sent while it is away. Topics have replication
factor 3 and min.insync.replicas 2, producers acks=all and idempotence, so:

- every upload ends with the counts of the offline check of the same file;
- every eligible achievement is claimed once at the stand-in, each created by one call;
- no service was restarted (same PIDs): they found the new leaders themselves;
- started again, the broker rejoins and every partition's ISR is back to 3.

The time from the kill to the last upload's outcome and from the restart to a full ISR are
printed (liveness bounds here, not speed targets).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from services.core.db import TRANSIENT_ERRORS
from services.core.events import Topics
from services.core.kafka import connection_options
from tests import supervised
from tests.cluster.conftest import SERVICES, Cluster
from tests.e2e.outcomes_under_fault import (
    calls_of_claims_held_once,
    creations,
    eligible_achievements,
    offline_reports,
)
from tests.e2e.test_exactly_once_claims import GeneratedFile, generate_file, ulns
from tests.e2e.test_validator_rebalance_and_pause import check_outcome
from tests.supervised import alive, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

UK = ZoneInfo("Europe/London")
ROWS = 900
TOPICS = Topics()


async def partitions(cluster: Cluster) -> list[dict[str, Any]]:
    """Every partition of the pipeline's topics: topic, partition, leader, replicas, isr."""
    admin = AIOKafkaAdminClient(**connection_options(cluster.kafka()))
    await admin.start()
    try:
        described = await admin.describe_topics(TOPICS.all())
    finally:
        await admin.close()
    return [
        {"topic": topic["topic"], **partition}
        for topic in described
        for partition in topic["partitions"]
    ]


def busiest_leader(described: list[dict[str, Any]]) -> int:
    """The broker leading the most partitions of the uploads and accepted topics."""
    leaders = Counter(
        p["leader"] for p in described if p["topic"] in (TOPICS.uploads, TOPICS.accepted)
    )
    leader: int = leaders.most_common(1)[0][0]
    return leader


async def fetch(cluster: Cluster, sql: str, *args: Any) -> Any:
    connection = await asyncpg.connect(cluster.settings["DATABASE_URL"])
    try:
        return await connection.fetchrow(sql, *args)
    finally:
        await connection.close()


async def claims_of(cluster: Cluster, upload_ids: list[str]) -> tuple[int, int, int]:
    """(claims, accepted, pending) of these uploads; zeros while the database cannot answer."""
    try:
        row = await fetch(
            cluster,
            "SELECT count(*), count(*) FILTER (WHERE state = 'accepted'),"
            " count(*) FILTER (WHERE state = 'pending')"
            " FROM grant_claims WHERE upload_id = ANY($1::uuid[])",
            upload_ids,
        )
    except (*TRANSIENT_ERRORS, asyncpg.PostgresError):
        return 0, 0, 0
    return row[0], row[1], row[2]


async def status_of(cluster: Cluster, upload_id: str) -> str | None:
    row = await fetch(cluster, "SELECT status FROM uploads WHERE upload_id = $1", upload_id)
    return None if row is None else str(row[0])


async def eventually(check: Any, what: str, cluster: Cluster, timeout_s: float) -> None:
    await supervised.eventually(check, what, cluster, timeout_s, poll_s=0.5)


async def test_a_killed_leader_broker_loses_and_doubles_nothing_and_rejoins(
    cluster: Cluster, tmp_path: Path
) -> None:
    pipeline = cluster.pipeline()
    _, api_key = await pipeline.create_ato("Broker Fault Training Ltd")
    today = datetime.now(UK).date()
    # Learners no earlier run used: the stand-in keeps its claims between runs.
    learners = ulns(100_000_000 + secrets.randbelow(800_000) * 1_000)
    files: list[GeneratedFile] = [
        generate_file(f"broker-{n}.csv", ROWS, learners, empty_levy=10, not_eligible_levy=10)
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
    await eventually(
        lambda: _under_way(cluster, ids[1]), "the second upload under way", cluster, 120
    )

    victim = busiest_leader(await partitions(cluster))
    name = f"kafka-{victim}"
    killed_at = time.monotonic()
    killed = cluster.sigkill(name)
    # Kept down: the supervisor's wrapper would start it again within a second.
    cluster.ctl("stop", name)
    await asyncio.to_thread(wait_until, lambda: not alive(killed), "the broker to die", 30, cluster)

    ids.append(
        (await pipeline.upload(files[2].body, api_key, file_name=files[2].name))["upload_id"]
    )
    for upload_id in ids:
        await pipeline.wait_final(upload_id, api_key, timeout_s=300)
    outcomes_s = time.monotonic() - killed_at
    for upload_id, report in zip(ids, expected, strict=True):
        await check_outcome(pipeline, upload_id, report)

    eligible = eligible_achievements(ids, files)

    async def settled() -> bool:
        total, _, pending = await claims_of(cluster, ids)
        return total == len(eligible) and pending == 0

    await eventually(settled, "every claim answered", cluster, 300)
    claims_s = time.monotonic() - killed_at

    calls = await calls_of_claims_held_once(pipeline, ids, eligible)
    created = creations(calls)
    assert {claim_id for claim_id, n in created.items() if n == 1} == set(calls)

    after = {name: cluster.pid(name) for name in SERVICES}
    assert after == before, f"restarted: {[n for n in SERVICES if after[n] != before[n]]}"

    restarted_at = time.monotonic()
    cluster.ctl("start", name)

    async def isr_full() -> bool:
        try:
            described = await partitions(cluster)
        # A broker still starting answers with any of Kafka's errors.
        except Exception:
            return False
        return all(len(p["isr"]) == 3 for p in described)

    await eventually(isr_full, f"{name} back in every ISR", cluster, 300)
    rejoin_s = time.monotonic() - restarted_at
    print(
        f"broker kill ({name}): every outcome {outcomes_s:.1f}s and every claim"
        f" {claims_s:.1f}s after the kill; ISR 3 again {rejoin_s:.1f}s after the restart"
    )


async def _some_accepted(cluster: Cluster, ids: list[str]) -> bool:
    return (await claims_of(cluster, ids))[1] > 0


async def _under_way(cluster: Cluster, upload_id: str) -> bool:
    return await status_of(cluster, upload_id) not in (None, "received")
