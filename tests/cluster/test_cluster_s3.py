"""The S3 server of `make cluster` (SeaweedFS) is killed while uploads stream in and chunks are
read, kept down a while, then started again.

Upload A (two chunks) is validating and upload B was just taken when the server is SIGKILLed;
upload C is half sent at that moment, and upload D is sent whole while the server is down. So:

- D is answered 503 (the file could not be stored: nothing was recorded); C is answered 503 or
  taken, as the server's loss met its body;
- once the server is back, each 503 is fixed by the client's retry with the same
  Idempotency-Key: the ATO has exactly four uploads, each final with the counts of the offline
  check of its file (A's and B's chunk reads waited out the outage as a transient error);
- every eligible achievement is claimed once at the stand-in, each created by one call;
- no service was restarted.

The outage's length and the time from the server's return to the last outcome are printed
(liveness bounds here, not speed targets).
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from tests.cluster.conftest import SERVICES, Cluster
from tests.cluster.test_cluster_gateway import established, post, two_halves
from tests.cluster.test_cluster_kafka import claims_of, eventually, status_of
from tests.e2e.conftest import wait_for_port
from tests.e2e.outcomes_under_fault import (
    calls_of_claims_held_once,
    creations,
    eligible_achievements,
    offline_reports,
)
from tests.e2e.test_exactly_once_claims import generate_file, ulns
from tests.e2e.test_validator_rebalance_and_pause import check_outcome
from tests.supervised import alive, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

UK = ZoneInfo("Europe/London")
S3_PORT = 8333
GATEWAY_PORTS = (8181, 8182)
# Two chunks of 20,000 rows (VALIDATOR_CHUNK_ROWS): reads of the stored file by two workers.
# Most of its rows name an employer not eligible for the grant: claims at the stand-in's pace
# (tens a second here) would otherwise take minutes.
ROWS_A = 21_000
NOT_ELIGIBLE_A = 20_000
ROWS = 900
# Liveness bounds.
RETRIED_WITHIN_S = 120
FINAL_WITHIN_S = 420


async def sent_until_taken(
    gateway_url: str, api_key: str, name: str, key: str, body: bytes
) -> tuple[int, dict[str, Any]]:
    """The upload sent again, with the same Idempotency-Key, while the gateway answers 503."""
    deadline = time.monotonic() + RETRIED_WITHIN_S
    while True:
        status, answer = await post(gateway_url, api_key, name, key, body)
        if status in (200, 202) or time.monotonic() > deadline:
            return status, answer
        assert status == 503, answer
        await asyncio.sleep(1)


async def test_the_s3_server_lost_mid_upload_and_mid_read_loses_and_doubles_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    pipeline = cluster.pipeline()
    ato_id, api_key = await pipeline.create_ato("Object Store Fault Training Ltd")
    today = datetime.now(UK).date()
    learners = ulns(100_000_000 + secrets.randbelow(800_000) * 1_000)
    files = [
        generate_file(f"s3-{name}.csv", rows, learners, empty_levy=10, not_eligible_levy=other)
        for name, rows, other in (
            ("a", ROWS_A, NOT_ELIGIBLE_A),
            ("b", ROWS, 10),
            ("c", ROWS, 10),
            ("d", ROWS, 10),
        )
    ]
    a, b, c, d = files
    expected = offline_reports(files, tmp_path, today)
    keys = {generated.name: str(uuid.uuid4()) for generated in files}
    before = {name: cluster.pid(name) for name in SERVICES}
    url = pipeline.gateway_url

    status, answer = await post(url, api_key, a.name, keys[a.name], a.body)
    assert status == 202, answer
    ids = {a.name: answer["upload_id"]}
    await eventually(lambda: _under_way(cluster, ids[a.name]), "upload A under way", cluster, 180)

    idle = {port: await asyncio.to_thread(established, port) for port in GATEWAY_PORTS}
    released = asyncio.Event()
    sending_c = asyncio.create_task(
        post(url, api_key, c.name, keys[c.name], two_halves(c.body, released))
    )

    async def c_receiving() -> bool:
        counts = {port: await asyncio.to_thread(established, port) for port in GATEWAY_PORTS}
        return any(counts[port] > idle[port] for port in GATEWAY_PORTS)

    await eventually(c_receiving, "a gateway receiving upload C", cluster, 60)
    status, answer = await post(url, api_key, b.name, keys[b.name], b.body)
    assert status == 202, answer
    ids[b.name] = answer["upload_id"]

    killed = cluster.sigkill("s3")
    # Kept down: the supervisor's wrapper would start it again within a second.
    cluster.ctl("stop", "s3")
    down_at = time.monotonic()
    await asyncio.to_thread(wait_until, lambda: not alive(killed), "S3 to die", 30, cluster)

    status_d, answer_d = await post(url, api_key, d.name, keys[d.name], d.body)
    assert status_d == 503, answer_d
    assert answer_d.get("code") == "STORAGE_UNAVAILABLE", answer_d
    released.set()
    status_c, answer_c = await sending_c
    assert status_c in (202, 503), answer_c

    cluster.ctl("start", "s3")
    await wait_for_port(S3_PORT, timeout_s=120)
    back_at = time.monotonic()
    for generated, first in ((c, (status_c, answer_c)), (d, (status_d, answer_d))):
        status, answer = first
        if status != 202:
            status, answer = await sent_until_taken(
                url, api_key, generated.name, keys[generated.name], generated.body
            )
        assert status == 202, answer
        ids[generated.name] = answer["upload_id"]
    retried_s = time.monotonic() - back_at

    upload_ids = [ids[generated.name] for generated in files]
    for upload_id in upload_ids:
        await pipeline.wait_final(upload_id, api_key, timeout_s=FINAL_WITHIN_S)
    outcomes_s = time.monotonic() - back_at
    for upload_id, report in zip(upload_ids, expected, strict=True):
        await check_outcome(pipeline, upload_id, report)
    connection = await asyncpg.connect(cluster.settings["DATABASE_URL"])
    try:
        uploads = await connection.fetchval(
            "SELECT count(*) FROM uploads WHERE ato_id = $1", ato_id
        )
    finally:
        await connection.close()
    assert uploads == len(files)

    eligible = eligible_achievements(upload_ids, files)

    async def settled() -> bool:
        total, _, pending = await claims_of(cluster, upload_ids)
        return total == len(eligible) and pending == 0

    await eventually(settled, "every claim answered", cluster, FINAL_WITHIN_S)
    claims_s = time.monotonic() - back_at
    calls = await calls_of_claims_held_once(pipeline, upload_ids, eligible)
    created = creations(calls)
    assert {claim_id for claim_id, n in created.items() if n == 1} == set(calls)

    after = {name: cluster.pid(name) for name in SERVICES}
    assert after == before, f"restarted: {[n for n in SERVICES if after[n] != before[n]]}"
    print(
        f"S3 kill: down {back_at - down_at:.1f}s (C answered {status_c} then);"
        f" after its return the 503s taken again in {retried_s:.1f}s, every outcome in"
        f" {outcomes_s:.1f}s and every claim in {claims_s:.1f}s"
    )


async def _under_way(cluster: Cluster, upload_id: str) -> bool:
    return await status_of(cluster, upload_id) not in (None, "received")
