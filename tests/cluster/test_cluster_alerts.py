"""The project's alert rules fire in `make cluster`'s Prometheus when what they watch breaks.

Prometheus there loads deploy/prometheus/alerts.yaml with its `for:` times and windows scaled
down (`CLUSTER_ALERT_SCALE`, which `make cluster-test` sets), so a fault fires in seconds; each
test reads the loaded rule's `for:` from Prometheus and waits that long plus a generous margin,
polling /api/v1/alerts. So:

- a stopped validator makes `AchievementsServiceDown` fire for its instance;
- with every validator stopped, uploads keep arriving: the lag the ops exporter measures from
  outside the validators' group grows, and `KafkaConsumerLagGrowing` fires for that group.
  The uploads come fast until the lag passes the rule's floor, then one at a time, so that it
  still grows while the rule's `for:` runs, and no more are sent than that needs: each is one
  record to consume and one outcome to decide, and outcomes of one ATO are decided one at a
  time (a per-ATO lock), so they are spread over several ATOs.

Each test starts the validators it stopped again and waits until every upload it sent is
decided, so the tests after it meet an idle pipeline. The time from the fault to the firing
alert is printed.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.cluster.conftest import Cluster
from tests.cluster.test_cluster_gateway import post
from tests.cluster.test_cluster_kafka import eventually
from tests.e2e.test_exactly_once_claims import GeneratedFile, generate_file, ulns

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(600)]

PROMETHEUS_URL = "http://127.0.0.1:9090"
EXPORTER_URL = "http://127.0.0.1:9141"
VALIDATORS = ("validator-1", "validator-2", "validator-3", "validator-4")
VALIDATOR_PORTS = {"validator-1": 9111}
# A rule whose scaled `for:` is longer than this was not scaled (the test would take minutes).
SCALED_FOR_AT_MOST_S = 60
# Beyond the rule's `for:`: scrapes and evaluations every 5 s, a stopping process's own drain.
MARGIN_S = 120
# The lag alert's floor (alerts.yaml) and how many uploads the test sends at most.
LAG_FLOOR = 100
MAX_UPLOADS = 600
SENDERS = 3
ATOS = 8
# Once past the floor: one upload at a time, this far apart (the lag keeps growing).
PACE_S = 1.0
DECIDED_WITHIN_S = 600


async def prometheus(path: str, **params: str) -> Any:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{PROMETHEUS_URL}{path}", params=params) as response,
    ):
        assert response.status == 200, await response.text()
        return (await response.json())["data"]


async def rule_for_s(alert: str) -> float:
    """The `for:` of the rule Prometheus loaded, in seconds; skips when it was not scaled."""
    data = await prometheus("/api/v1/rules", type="alert")
    durations = [
        float(rule["duration"])
        for group in data["groups"]
        for rule in group["rules"]
        if rule["name"] == alert
    ]
    assert durations, f"Prometheus has no rule {alert}"
    if durations[0] > SCALED_FOR_AT_MOST_S:
        pytest.skip(f"{alert} waits {durations[0]:g}s: start the cluster with CLUSTER_ALERT_SCALE")
    return durations[0]


async def firing(alert: str, **labels: str) -> bool:
    data = await prometheus("/api/v1/alerts")
    return any(
        found["labels"].get("alertname") == alert
        and found["state"] == "firing"
        and all(found["labels"].get(name) == value for name, value in labels.items())
        for found in data["alerts"]
    )


async def validator_lag() -> float | None:
    """The validators' lag on the uploads topic as the ops exporter measures it now."""
    async with aiohttp.ClientSession() as session, session.get(f"{EXPORTER_URL}/metrics") as got:
        text = await got.text()
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("achievements_consumer_group_lag_messages{")
        and 'group="validator"' in line
    ]
    return sum(values) if values else None


def tiny_files(learners: Iterator[str]) -> Iterator[GeneratedFile]:
    """One-row files whose row claims nothing (no levy number): each upload is one record on
    the uploads topic, and no claim for the stand-in."""
    n = 0
    while True:
        n += 1
        yield generate_file(f"lag-{n}.csv", 1, learners, empty_levy=1, not_eligible_levy=0)


def start_validators(cluster: Cluster, names: tuple[str, ...]) -> None:
    cluster.ctl("start", *(f"services:{name}" for name in names))


async def test_a_stopped_validator_fires_service_down(cluster: Cluster) -> None:
    for_s = await rule_for_s("AchievementsServiceDown")
    instance = f"127.0.0.1:{VALIDATOR_PORTS['validator-1']}"
    assert not await firing("AchievementsServiceDown", instance=instance)
    stopped_at = time.monotonic()
    cluster.ctl("stop", "services:validator-1")
    try:
        await eventually(
            lambda: firing("AchievementsServiceDown", instance=instance),
            "AchievementsServiceDown for validator-1",
            cluster,
            for_s + MARGIN_S,
        )
        fired_s = time.monotonic() - stopped_at
    finally:
        start_validators(cluster, ("validator-1",))
    await eventually(
        lambda: _not(firing("AchievementsServiceDown", instance=instance)),
        "AchievementsServiceDown for validator-1 to resolve",
        cluster,
        MARGIN_S,
    )
    print(
        f"validator-1 stopped: AchievementsServiceDown fired {fired_s:.1f}s later (for: {for_s:g}s)"
    )


async def test_validators_stopped_under_load_fire_the_consumer_lag_alert(
    cluster: Cluster,
) -> None:
    for_s = await rule_for_s("KafkaConsumerLagGrowing")
    pipeline = cluster.pipeline()
    api_keys = [(await pipeline.create_ato(f"Lag Alert Training Ltd {n}"))[1] for n in range(ATOS)]
    files = tiny_files(ulns(100_000_000 + secrets.randbelow(800_000) * 1_000))
    stop = asyncio.Event()
    past_floor = asyncio.Event()
    sent: list[tuple[str, str]] = []  # (upload id, API key)

    async def sender(number: int) -> None:
        # Bounded in count; each 429 (an ATO's uploads in flight at a gateway) is sent again.
        while not stop.is_set() and len(sent) < MAX_UPLOADS:
            if past_floor.is_set():
                if number > 0:
                    return
                await asyncio.sleep(PACE_S)
            generated = next(files)
            api_key = api_keys[len(sent) % ATOS]
            key = str(uuid.uuid4())
            status, answer = await post(
                pipeline.gateway_url, api_key, generated.name, key, generated.body
            )
            if status == 429:
                continue
            assert status == 202, answer
            sent.append((answer["upload_id"], api_key))

    cluster.ctl("stop", *(f"services:{name}" for name in VALIDATORS))
    stopped_at = time.monotonic()
    senders = [asyncio.create_task(sender(n)) for n in range(SENDERS)]
    try:
        await eventually(
            lambda: _lag_above(LAG_FLOOR),
            f"the validators' lag above {LAG_FLOOR}",
            cluster,
            MARGIN_S,
        )
        past_floor.set()
        await eventually(
            lambda: firing("KafkaConsumerLagGrowing", group="validator"),
            "KafkaConsumerLagGrowing for the validators",
            cluster,
            for_s + MARGIN_S,
        )
        fired_s = time.monotonic() - stopped_at
        lag_at_fire = await validator_lag()
    finally:
        stop.set()
        ended = await asyncio.gather(*senders, return_exceptions=True)
        start_validators(cluster, VALIDATORS)
    for outcome in ended:
        if isinstance(outcome, BaseException):
            raise outcome
    await eventually(lambda: _lag_at_most(0), "the validators caught up", cluster, 300)
    for upload_id, api_key in sent:
        await pipeline.wait_final(upload_id, api_key, timeout_s=DECIDED_WITHIN_S)
    decided_s = time.monotonic() - stopped_at
    print(
        f"every validator stopped, {len(sent)} uploads sent: KafkaConsumerLagGrowing fired"
        f" {fired_s:.1f}s later (for: {for_s:g}s, lag then {lag_at_fire:g}); every upload"
        f" decided {decided_s:.1f}s after the stop"
    )


async def _not(check: Any) -> bool:
    return not await check


async def _lag_above(floor: int) -> bool:
    lag = await validator_lag()
    return lag is not None and lag > floor


async def _lag_at_most(ceiling: int) -> bool:
    lag = await validator_lag()
    return lag is not None and lag <= ceiling
