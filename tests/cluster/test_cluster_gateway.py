"""A gateway of `make cluster` dies behind nginx while uploads stream through it.

Two uploads are streamed at once (nginx sends one to each gateway); once both gateways are
receiving one, `gateway-1` is SIGKILLed and the rest of both bodies is sent. The upload on
the killed gateway fails; its client sends it again with the same Idempotency-Key, and nginx
takes it to the other gateway. So:

- the ATO has exactly two uploads, each final with the counts of the offline check;
- the other gateway served on: `/healthz` through nginx answered while one was down;
- the supervisor started the killed gateway again.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import asyncpg
import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.test_cluster_kafka import eventually
from tests.e2e.outcomes_under_fault import offline_reports
from tests.e2e.test_exactly_once_claims import generate_file, ulns
from tests.e2e.test_validator_rebalance_and_pause import check_outcome
from tests.supervised import alive, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(600)]

UK = ZoneInfo("Europe/London")
ROWS = 20_000
# Most rows name an employer the grant does not cover: this test checks no claim, and tens of
# thousands of them, at the stand-in's pace, would hold up the claims of the tests after it.
NOT_ELIGIBLE = ROWS - 500


async def two_halves(body: bytes, released: asyncio.Event) -> AsyncIterator[bytes]:
    """The first half of the body, then the rest once `released` is set."""
    half = len(body) // 2
    yield body[:half]
    await released.wait()
    yield body[half:]


async def post(
    gateway_url: str, api_key: str, name: str, key: str, data: Any
) -> tuple[int, dict[str, Any]]:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{gateway_url}/v1/uploads",
                data=data,
                params={"file_name": name, "terms_accepted": "true"},
                headers={
                    "Authorization": f"Bearer {api_key}",
                    "Content-Type": "text/csv",
                    "Idempotency-Key": key,
                },
            ) as response,
        ):
            text = await response.text()
            status = response.status
    except aiohttp.ClientError:
        return 0, {}  # the connection died with the gateway
    try:
        answer: dict[str, Any] = json.loads(text)
    except ValueError:
        return status, {"body": text[:200]}  # nginx's own error page
    return status, answer


def established(port: int) -> int:
    """TCP connections established to 127.0.0.1:`port` (nginx keeps none idle to a gateway, so
    beyond Prometheus's scrape connection each is a request in flight)."""
    local = f"0100007F:{port:04X}"
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[1] == local and line.split()[3] == "01")


async def test_a_gateway_killed_mid_upload_leaves_one_upload_per_idempotency_key(
    cluster: Cluster, tmp_path: Path
) -> None:
    pipeline = cluster.pipeline()
    ato_id, api_key = await pipeline.create_ato("Gateway Fault Training Ltd")
    today = datetime.now(UK).date()
    learners = ulns(100_000_000 + secrets.randbelow(800_000) * 1_000)
    files = [
        generate_file(
            f"gateway-{n}.csv", ROWS, learners, empty_levy=10, not_eligible_levy=NOT_ELIGIBLE
        )
        for n in (1, 2)
    ]
    expected = offline_reports(files, tmp_path, today)
    keys = [str(uuid.uuid4()) for _ in files]
    ports = (8181, 8182)
    idle = {port: await asyncio.to_thread(established, port) for port in ports}

    released = asyncio.Event()
    sending = [
        asyncio.create_task(
            post(
                pipeline.gateway_url,
                api_key,
                generated.name,
                key,
                two_halves(generated.body, released),
            )
        )
        for generated, key in zip(files, keys, strict=True)
    ]

    async def both_receiving() -> bool:
        counts = {port: await asyncio.to_thread(established, port) for port in ports}
        return all(counts[port] > idle[port] for port in ports)

    await eventually(both_receiving, "both gateways receiving an upload", cluster, 60)
    killed = cluster.sigkill("gateway-1")
    await asyncio.to_thread(wait_until, lambda: not alive(killed), "gateway-1 to die", 30, cluster)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{pipeline.gateway_url}/healthz") as health,
    ):
        assert health.status == 200, "the other gateway did not serve on"
    released.set()
    first_tries = await asyncio.gather(*sending)

    upload_ids = []
    for (status, answer), generated, key in zip(first_tries, files, keys, strict=True):
        if status not in (200, 202):  # the upload that was on the killed gateway: sent again
            status, answer = await post(
                pipeline.gateway_url, api_key, generated.name, key, generated.body
            )
        assert status in (200, 202), answer
        upload_ids.append(answer["upload_id"])
    assert any(status not in (200, 202) for status, _ in first_tries), (
        "neither upload went through the killed gateway"
    )

    for upload_id, report in zip(upload_ids, expected, strict=True):
        await pipeline.wait_final(upload_id, api_key, timeout_s=300)
        await check_outcome(pipeline, upload_id, report)
    connection = await asyncpg.connect(cluster.settings["DATABASE_URL"])
    try:
        uploads = await connection.fetchval(
            "SELECT count(*) FROM uploads WHERE ato_id = $1", ato_id
        )
    finally:
        await connection.close()
    assert uploads == 2

    await asyncio.to_thread(
        wait_until,
        lambda: cluster.pid("gateway-1") not in (None, killed),
        "the supervisor to start gateway-1 again",
        60,
        cluster,
    )
