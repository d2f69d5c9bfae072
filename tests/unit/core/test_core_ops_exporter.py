"""The operations exporter without servers: the metrics a snapshot of offsets and purge runs
gives, a source that cannot be read reported as down (never served stale), the groups named as
the consumers name them, and the process answering while Kafka and PostgreSQL are away."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Sequence
from datetime import UTC, datetime

import aiohttp
import pytest
import structlog.testing
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from services import cli
from services.core.consumer_lag import PartitionLag, WatchedGroup
from services.core.kafka import make_consumer
from services.core.misconfiguration import ConfigurationError
from services.core.ops_exporter import (
    ExporterSettings,
    OpsExporter,
    Snapshot,
    serve,
    watched_groups,
)
from services.core.purge_runs import PurgeOutcome, PurgeRunsSummary
from services.core.settings import KafkaSettings, PostgresSettings
from services.grant_bridge.settings import GrantBridgeSettings
from services.validator.settings import ValidatorSettings

UPLOADS = "achievements.uploads.v1"
ACCEPTED = "achievements.accepted.v1"
LAGS = [
    PartitionLag("validator", UPLOADS, 0, 5),
    PartitionLag("validator", UPLOADS, 1, 0),
    PartitionLag("grant-bridge", ACCEPTED, 0, 12),
]
# Two successes and a failure, the failure last.
SUMMARY = PurgeRunsSummary(
    last_success_at=datetime(2026, 12, 6, 2, 31, 40, tzinfo=UTC),
    last_run_at=datetime(2026, 12, 7, 2, 30, 5, tzinfo=UTC),
    last_outcome=PurgeOutcome.FAILED,
    uploads_purged=14,
    achievements_purged=230,
    files_deleted=13,
    runs_succeeded=2,
    runs_failed=1,
)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of the exposition but the client library's own (process_*, python_*)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.startswith(("process_", "python_"))
    }


def exporter_of(
    lags: Sequence[PartitionLag] | Exception, summary: PurgeRunsSummary | Exception
) -> OpsExporter:
    async def read_lag() -> Sequence[PartitionLag]:
        if isinstance(lags, Exception):
            raise lags
        return lags

    async def read_purge() -> PurgeRunsSummary:
        if isinstance(summary, Exception):
            raise summary
        return summary

    return OpsExporter(read_lag, read_purge, read_timeout_s=5.0)


async def test_a_scrape_exports_each_partitions_lag_and_the_purge_runs() -> None:
    exporter = exporter_of(LAGS, SUMMARY)
    await exporter.refresh()
    assert samples(exporter.exposition().decode()) == {
        ("achievements_exporter_source_up", (("source", "kafka"),)): 1.0,
        ("achievements_exporter_source_up", (("source", "postgres"),)): 1.0,
        (
            "achievements_consumer_group_lag_messages",
            (("group", "validator"), ("partition", "0"), ("topic", UPLOADS)),
        ): 5.0,
        (
            "achievements_consumer_group_lag_messages",
            (("group", "validator"), ("partition", "1"), ("topic", UPLOADS)),
        ): 0.0,
        (
            "achievements_consumer_group_lag_messages",
            (("group", "grant-bridge"), ("partition", "0"), ("topic", ACCEPTED)),
        ): 12.0,
        # 2026-12-06T02:31:40Z and 2026-12-07T02:30:05Z as Unix time.
        ("achievements_purge_last_success_timestamp_seconds", ()): 1796524300.0,
        ("achievements_purge_last_run_timestamp_seconds", ()): 1796610605.0,
        ("achievements_purge_last_run_succeeded", ()): 0.0,
        ("achievements_purge_rows_purged_total", (("table", "uploads"),)): 14.0,
        ("achievements_purge_rows_purged_total", (("table", "achievements"),)): 230.0,
        ("achievements_purge_files_deleted_total", ()): 13.0,
        ("achievements_purge_runs_total", (("outcome", "succeeded"),)): 2.0,
        ("achievements_purge_runs_total", (("outcome", "failed"),)): 1.0,
    }


async def test_a_purge_that_never_ran_leaves_the_times_absent() -> None:
    never = PurgeRunsSummary(None, None, None, 0, 0, 0, 0, 0)
    exporter = exporter_of([], never)
    await exporter.refresh()
    exported = samples(exporter.exposition().decode())
    assert {name for name, _ in exported} == {
        "achievements_exporter_source_up",
        "achievements_purge_rows_purged_total",
        "achievements_purge_files_deleted_total",
        "achievements_purge_runs_total",
    }
    assert exported[("achievements_purge_runs_total", (("outcome", "succeeded"),))] == 0.0


async def test_a_source_that_fails_is_down_and_its_metrics_are_left_out() -> None:
    exporter = exporter_of(LAGS, SUMMARY)
    await exporter.refresh()
    # Kafka goes away: the lag of the scrape before is not served again.
    exporter._read_lag = exporter_of(ConnectionRefusedError(), SUMMARY)._read_lag
    snapshot = await exporter.refresh()
    assert snapshot == Snapshot(lags=None, purge=SUMMARY)
    exported = samples(exporter.exposition().decode())
    assert exported[("achievements_exporter_source_up", (("source", "kafka"),))] == 0.0
    assert exported[("achievements_exporter_source_up", (("source", "postgres"),))] == 1.0
    assert not any(name == "achievements_consumer_group_lag_messages" for name, _ in exported)
    assert exported[("achievements_purge_runs_total", (("outcome", "failed"),))] == 1.0


async def test_a_refused_setting_is_named_in_the_log() -> None:
    refused = ConfigurationError("KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD", "login refused")
    exporter = exporter_of(refused, SUMMARY)
    with structlog.testing.capture_logs() as logs:
        snapshot = await exporter.refresh()
    assert snapshot.lags is None
    assert logs == [
        {
            "event": "exporter_source_unread",
            "log_level": "warning",
            "source": "kafka",
            "error": "ConfigurationError",
            "setting": "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD",
            "reason": "login refused",
        }
    ]


async def test_a_source_slower_than_the_read_timeout_is_down() -> None:
    never = asyncio.Event()

    async def read_lag() -> Sequence[PartitionLag]:
        await never.wait()
        return LAGS

    async def read_purge() -> PurgeRunsSummary:
        return SUMMARY

    exporter = OpsExporter(read_lag, read_purge, read_timeout_s=0.05)
    assert await exporter.refresh() == Snapshot(lags=None, purge=SUMMARY)


async def test_the_app_serves_healthz_and_metrics() -> None:
    exporter = exporter_of(LAGS, RuntimeError("database gone"))
    async with TestServer(exporter.app()) as server, aiohttp.ClientSession() as session:
        async with session.get(server.make_url("/healthz")) as health:
            assert (health.status, await health.json()) == (200, {"status": "ok"})
        async with session.get(server.make_url("/metrics")) as metrics:
            assert metrics.status == 200
            assert metrics.headers["Content-Type"].startswith("text/plain")
            exported = samples(await metrics.text())
    assert exported[("achievements_exporter_source_up", (("source", "postgres"),))] == 0.0


# --- The groups, named as the consumers name them -------------------------------------------


def test_the_groups_default_to_the_consumers_own_defaults() -> None:
    settings = ExporterSettings()
    assert settings.validator_group_id == ValidatorSettings.model_fields["group_id"].default
    assert (
        settings.grant_bridge_consumer_group
        == GrantBridgeSettings.model_fields["consumer_group"].default
    )


def test_the_groups_follow_the_consumers_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VALIDATOR_GROUP_ID", "validator-blue")
    monkeypatch.setenv("GRANT_BRIDGE_CONSUMER_GROUP", "bridge-blue")
    monkeypatch.setenv("KAFKA_TOPIC_PREFIX", "staging.")
    assert watched_groups(ExporterSettings()) == [
        WatchedGroup("staging.validator-blue", ("staging.achievements.uploads.v1",)),
        WatchedGroup("staging.bridge-blue", ("staging.achievements.accepted.v1",)),
    ]


async def test_a_watched_group_is_the_group_a_consumer_joins() -> None:
    kafka = KafkaSettings(topic_prefix="t1.")
    [validator, _] = watched_groups(ExporterSettings(kafka=kafka))
    consumer = make_consumer(kafka, group_id="validator", client_id="naming-test")
    assert consumer._group_id == validator.group_id


# --- The process --------------------------------------------------------------------------------


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_the_exporter_answers_while_kafka_and_postgresql_are_away() -> None:
    database = f"postgresql://achievements:achievements@127.0.0.1:{closed_port()}/achievements"
    settings = ExporterSettings(
        host="127.0.0.1",
        port=closed_port(),
        read_timeout_s=3.0,
        kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{closed_port()}"),
        postgres=PostgresSettings(database_url=SecretStr(database)),
    )
    stop = asyncio.Event()
    listening = asyncio.Event()
    serving = asyncio.create_task(serve(settings, stop, started=lambda *_: listening.set()))
    try:
        await asyncio.wait_for(listening.wait(), 10)
        url = f"http://127.0.0.1:{settings.port}/metrics"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            exported = samples(await response.text())
    finally:
        stop.set()
        await serving
    assert exported[("achievements_exporter_source_up", (("source", "kafka"),))] == 0.0
    assert exported[("achievements_exporter_source_up", (("source", "postgres"),))] == 0.0


def test_an_address_in_use_is_one_json_failure(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = cli.main(
            ["exporter", "serve", "--host", "127.0.0.1", "--port", str(port), "--json"]
        )
    failure = json.loads(capsys.readouterr().out)
    assert status == 4
    assert failure["code"] == "ADDRESS_UNAVAILABLE"
    assert failure["exit_code"] == 4
