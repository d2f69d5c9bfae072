"""The operations exporter against the real Kafka and PostgreSQL: the lag of a consumer group
that has stopped, from its committed offsets and the partitions' end offsets (read outside the
group), and the purge's recorded runs, both scraped from its `/metrics`."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import aiohttp
import asyncpg
import pytest
from aiokafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from services.core import purge_runs
from services.core.events import Topics
from services.core.kafka import make_consumer
from services.core.ops_exporter import ExporterSettings, serve
from services.core.purge_runs import PurgeRun
from services.core.settings import KafkaSettings, PostgresSettings
from tests.integration.test_consumer_loop import produce

pytestmark = pytest.mark.stack

# A scrape reads Kafka and PostgreSQL within this; generous for a loaded test machine.
READ_TIMEOUT_S = 20.0
Labels = tuple[tuple[str, str], ...]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def exporter_settings(kafka_settings: KafkaSettings, database_url: str) -> ExporterSettings:
    return ExporterSettings(
        host="127.0.0.1",
        port=free_port(),
        read_timeout_s=READ_TIMEOUT_S,
        kafka=kafka_settings,
        postgres=PostgresSettings(database_url=SecretStr(database_url)),
    )


@asynccontextmanager
async def exporter_serving(settings: ExporterSettings) -> AsyncIterator[str]:
    """The exporter running in this event loop; yields its `/metrics` URL."""
    stop = asyncio.Event()
    listening = asyncio.Event()
    serving = asyncio.create_task(serve(settings, stop, started=lambda *_: listening.set()))
    try:
        await asyncio.wait_for(listening.wait(), 30)
        yield f"http://127.0.0.1:{settings.port}/metrics"
    finally:
        stop.set()
        await asyncio.wait_for(serving, 30)


async def scrape(url: str) -> dict[tuple[str, Labels], float]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("achievements_")
    }


def lag_of(exported: dict[tuple[str, Labels], float], group: str) -> dict[str, float]:
    """The exported lag of `group`, by partition number."""
    return {
        dict(labels)["partition"]: value
        for (name, labels), value in exported.items()
        if name == "achievements_consumer_group_lag_messages" and dict(labels)["group"] == group
    }


async def test_the_lag_of_a_group_that_stopped_is_what_was_produced_after_its_commits(
    kafka_settings: KafkaSettings, topics: Topics, database_url: str
) -> None:
    # Five records on partition 0, three on partition 1, before the validators' group reads.
    await produce(kafka_settings, topics.uploads, *((0, b"u") for _ in range(5)))
    await produce(kafka_settings, topics.uploads, *((1, b"u") for _ in range(3)))
    # The group's only member: `start()` returns once the group gave it every partition. It
    # commits having read four records of partition 0 and all three of partition 1, then stops.
    member = make_consumer(
        kafka_settings, topics.uploads, group_id="validator", client_id="exporter-test"
    )
    await member.start()
    try:
        await member.commit(
            {TopicPartition(topics.uploads, 0): 4, TopicPartition(topics.uploads, 1): 3}
        )
    finally:
        await member.stop()
    # Uploads keep coming while no validator runs: two more on 0, four on 1, one on 2.
    await produce(kafka_settings, topics.uploads, (0, b"u"), (0, b"u"))
    await produce(kafka_settings, topics.uploads, *((1, b"u") for _ in range(4)))
    await produce(kafka_settings, topics.uploads, (2, b"u"))

    async with exporter_serving(exporter_settings(kafka_settings, database_url)) as url:
        exported = await scrape(url)

    group = kafka_settings.topic_prefix + "validator"
    # Partition 0: end 7, committed 4. Partition 1: end 7, committed 3. Partition 2: nothing
    # committed, the whole log (offset 0) to read. Partition 3: empty.
    assert lag_of(exported, group) == {"0": 3.0, "1": 4.0, "2": 1.0, "3": 0.0}
    labels = dict(
        next(
            labels
            for (name, labels), _ in exported.items()
            if name == "achievements_consumer_group_lag_messages" and dict(labels)["group"] == group
        )
    )
    assert labels["topic"] == topics.uploads
    # The bridges' group never ran, and nothing was accepted: nothing to read.
    bridges = kafka_settings.topic_prefix + "grant-bridge"
    assert lag_of(exported, bridges) == {"0": 0.0, "1": 0.0, "2": 0.0, "3": 0.0}
    assert exported[("achievements_exporter_source_up", (("source", "kafka"),))] == 1.0
    assert exported[("achievements_exporter_source_up", (("source", "postgres"),))] == 1.0


async def test_the_purge_runs_are_exported_from_purge_runs(
    kafka_settings: KafkaSettings, database_url: str, pool: asyncpg.Pool
) -> None:
    settings = exporter_settings(kafka_settings, database_url)
    async with exporter_serving(settings) as url:
        before = await scrape(url)
        # Two nightly successes, then a failure.
        night = datetime.fromisoformat("2026-12-05T02:30:00+00:00")
        await purge_runs.record(pool, PurgeRun(night, night + timedelta(seconds=60), 3, 40, 3))
        await purge_runs.record(
            pool,
            PurgeRun(night + timedelta(days=1), night + timedelta(days=1, seconds=30), 2, 10, 2),
        )
        await purge_runs.record(
            pool,
            PurgeRun(
                night + timedelta(days=2),
                night + timedelta(days=2, seconds=5),
                1,
                0,
                1,
                error_class="TooManyConnectionsError",
            ),
        )
        after = await scrape(url)

    # No run yet: the success time is absent (the alert's `absent` case), the counts zero.
    assert ("achievements_purge_last_success_timestamp_seconds", ()) not in before
    assert before[("achievements_purge_runs_total", (("outcome", "succeeded"),))] == 0.0
    purge_figures = {key: value for key, value in after.items() if "_purge_" in key[0]}
    assert purge_figures == {
        # 2026-12-06T02:30:30Z and 2026-12-07T02:30:05Z as Unix time.
        ("achievements_purge_last_success_timestamp_seconds", ()): 1796524230.0,
        ("achievements_purge_last_run_timestamp_seconds", ()): 1796610605.0,
        ("achievements_purge_last_run_succeeded", ()): 0.0,
        ("achievements_purge_rows_purged_total", (("table", "uploads"),)): 6.0,
        ("achievements_purge_rows_purged_total", (("table", "achievements"),)): 50.0,
        ("achievements_purge_files_deleted_total", ()): 6.0,
        ("achievements_purge_runs_total", (("outcome", "succeeded"),)): 2.0,
        ("achievements_purge_runs_total", (("outcome", "failed"),)): 1.0,
    }
    assert after[("achievements_exporter_source_up", (("source", "postgres"),))] == 1.0
