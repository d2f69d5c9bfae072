"""The operations exporter: a long-running process that exports, on `/metrics`, what no service
can say about itself (`achievements exporter serve`, services/cli/exporter.py):

- the consumer lag of the pipeline's groups, measured from outside them
  (services/core/consumer_lag.py), so it survives the validators or the bridges stopping;
- the retention purge's runs, read from `purge_runs` (services/core/purge_runs.py): a
  CronJob exits before Prometheus could scrape it.

Both sources are read at each scrape, at once, each within `EXPORTER_READ_TIMEOUT_S`. A source
that cannot be read is reported by `achievements_exporter_source_up{source}` 0 and its metrics
are left out of that scrape rather than repeated stale; the other's are served. The process
never exits because Kafka or PostgreSQL is away: it is what reports them. `/healthz` answers
while the event loop does (the liveness probe).

Labels hold group, topic and partition names, a source, an outcome, a table: nothing from a row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

import asyncpg
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core import purge_runs
from services.core.consumer_lag import ConsumerLagReader, PartitionLag, WatchedGroup
from services.core.db import create_pool
from services.core.events import Topics
from services.core.logging import get_logger
from services.core.misconfiguration import ConfigurationError
from services.core.purge_runs import PurgeOutcome, PurgeRunsSummary
from services.core.settings import KafkaSettings, PostgresSettings

log = get_logger()

DEFAULT_PORT: Final = 9141
# A container's port, reached through its pod address by Prometheus.
DEFAULT_HOST: Final = "0.0.0.0"  # noqa: S104
KAFKA_SOURCE: Final = "kafka"
POSTGRES_SOURCE: Final = "postgres"

_T = TypeVar("_T")


class ExporterSettings(BaseSettings):
    """`EXPORTER_*`, plus the groups' own variables and the shared Kafka and PostgreSQL ones."""

    model_config = SettingsConfigDict(env_prefix="EXPORTER_", extra="ignore")

    # EXPORTER_HOST, EXPORTER_PORT: where `/metrics` and `/healthz` are served (`--host` and
    # `--port` override them).
    host: str = DEFAULT_HOST
    port: int = Field(default=DEFAULT_PORT, ge=1, le=65535)
    # EXPORTER_READ_TIMEOUT_S: one read of Kafka, or of PostgreSQL, at a scrape gives up after
    # this long; under Prometheus's scrape timeout (10 s by default), so a scrape always answers.
    read_timeout_s: float = Field(default=5.0, gt=0)
    # The groups measured: the variables the validators and the bridges read for them, with
    # their defaults (a unit test holds them equal), so a renamed group is measured as renamed.
    validator_group_id: str = Field(
        default="validator",
        validation_alias=AliasChoices("validator_group_id", "VALIDATOR_GROUP_ID"),
    )
    grant_bridge_consumer_group: str = Field(
        default="grant-bridge",
        validation_alias=AliasChoices("grant_bridge_consumer_group", "GRANT_BRIDGE_CONSUMER_GROUP"),
    )
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)


def watched_groups(settings: ExporterSettings) -> list[WatchedGroup]:
    """The pipeline's consumer groups and their topics, named as the consumers name them:
    `KAFKA_TOPIC_PREFIX` before the group id (services/core/kafka.py, `make_consumer`) and
    before the topic (services/core/events.py, `Topics`)."""
    prefix = settings.kafka.topic_prefix
    topics = Topics(prefix)
    return [
        WatchedGroup(prefix + settings.validator_group_id, (topics.uploads,)),
        WatchedGroup(prefix + settings.grant_bridge_consumer_group, (topics.accepted,)),
    ]


# --- What one scrape serves -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the sources said at the last read; None: that source could not be read."""

    lags: Sequence[PartitionLag] | None = None
    purge: PurgeRunsSummary | None = None


def _lag_families(lags: Iterable[PartitionLag] | None) -> list[Metric]:
    lag = GaugeMetricFamily(
        "achievements_consumer_group_lag_messages",
        "Records a consumer group has still to read on a partition (end offset minus its"
        " committed offset), measured from outside the group.",
        labels=["group", "topic", "partition"],
    )
    for one in lags or ():
        lag.add_metric([one.group, one.topic, str(one.partition)], one.lag)
    return [lag]


def _purge_families(summary: PurgeRunsSummary | None) -> list[Metric]:
    last_success = GaugeMetricFamily(
        "achievements_purge_last_success_timestamp_seconds",
        "When the last retention purge that succeeded ended (Unix time); absent: none has.",
    )
    last_run = GaugeMetricFamily(
        "achievements_purge_last_run_timestamp_seconds",
        "When the last retention purge ended, however it ended (Unix time).",
    )
    last_succeeded = GaugeMetricFamily(
        "achievements_purge_last_run_succeeded",
        "1 if the last retention purge succeeded, 0 if it failed.",
    )
    rows = CounterMetricFamily(
        "achievements_purge_rows_purged",
        "Rows the retention purge emptied of personal data, by table (uploads, achievements),"
        " over every recorded run.",
        labels=["table"],
    )
    files = CounterMetricFamily(
        "achievements_purge_files_deleted",
        "Stored upload files the retention purge deleted, over every recorded run.",
    )
    runs = CounterMetricFamily(
        "achievements_purge_runs",
        "Retention purge runs recorded, by outcome (succeeded, failed).",
        labels=["outcome"],
    )
    if summary is not None:
        if summary.last_success_at is not None:
            last_success.add_metric([], summary.last_success_at.timestamp())
        if summary.last_run_at is not None:
            last_run.add_metric([], summary.last_run_at.timestamp())
        if summary.last_outcome is not None:
            last_succeeded.add_metric([], float(summary.last_outcome is PurgeOutcome.SUCCEEDED))
        rows.add_metric(["uploads"], summary.uploads_purged)
        rows.add_metric(["achievements"], summary.achievements_purged)
        files.add_metric([], summary.files_deleted)
        runs.add_metric([PurgeOutcome.SUCCEEDED.value], summary.runs_succeeded)
        runs.add_metric([PurgeOutcome.FAILED.value], summary.runs_failed)
    return [last_success, last_run, last_succeeded, rows, files, runs]


def metric_families(snapshot: Snapshot) -> list[Metric]:
    """The exporter's metrics for a snapshot: every family always (empty when its source could
    not be read, so nothing stale is served), and each source's state."""
    up = GaugeMetricFamily(
        "achievements_exporter_source_up",
        "1 if the operations exporter read the source (kafka, postgres) at this scrape, else 0.",
        labels=["source"],
    )
    up.add_metric([KAFKA_SOURCE], float(snapshot.lags is not None))
    up.add_metric([POSTGRES_SOURCE], float(snapshot.purge is not None))
    return [up, *_lag_families(snapshot.lags), *_purge_families(snapshot.purge)]


class _SnapshotCollector(Collector):
    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def collect(self) -> Iterable[Metric]:
        return metric_families(self.snapshot)


# --- The process ----------------------------------------------------------------------------

ReadLag = Callable[[], Awaitable[Sequence[PartitionLag]]]
ReadPurge = Callable[[], Awaitable[PurgeRunsSummary]]


class OpsExporter:
    """Reads both sources at each scrape (one scrape at a time) and serves what they said."""

    def __init__(self, read_lag: ReadLag, read_purge: ReadPurge, read_timeout_s: float) -> None:
        self._read_lag = read_lag
        self._read_purge = read_purge
        self._read_timeout_s = read_timeout_s
        self._collector = _SnapshotCollector()
        self._lock = asyncio.Lock()
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.registry.register(self._collector)

    async def refresh(self) -> Snapshot:
        async with self._lock:
            lags, purge = await asyncio.gather(
                self._bounded(KAFKA_SOURCE, self._read_lag),
                self._bounded(POSTGRES_SOURCE, self._read_purge),
            )
            self._collector.snapshot = Snapshot(lags=lags, purge=purge)
            return self._collector.snapshot

    async def _bounded(self, source: str, read: Callable[[], Awaitable[_T]]) -> _T | None:
        try:
            async with asyncio.timeout(self._read_timeout_s):
                return await read()
        except Exception as error:
            # Reported by `achievements_exporter_source_up`; the log says why, and which setting
            # when the source refused one (an ACL, a login, a certificate).
            refused = (
                {"setting": error.setting, "reason": error.reason}
                if isinstance(error, ConfigurationError)
                else {}
            )
            log.warning(
                "exporter_source_unread", source=source, error=type(error).__name__, **refused
            )
            return None

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def app(self) -> web.Application:
        async def healthz(_: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        async def metrics(_: web.Request) -> web.Response:
            await self.refresh()
            return web.Response(
                body=self.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        app = web.Application()
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/metrics", metrics)
        return app


def purge_reader(pool: asyncpg.Pool) -> ReadPurge:
    async def read() -> PurgeRunsSummary:
        async with pool.acquire() as connection:
            return await purge_runs.read_summary(connection)

    return read


async def serve(
    settings: ExporterSettings,
    stop: asyncio.Event,
    *,
    started: Callable[[str, int], None] | None = None,
) -> None:
    """Serves until `stop` is set. Nothing is connected before the first scrape: a pool opened
    empty and Kafka clients made at the first read, so the exporter answers (reporting its
    sources down) whatever is away. `started(host, port)` once it listens; an address in use
    raises `OSError`."""
    pool = await create_pool(settings.postgres, connect=False)
    lag_reader = ConsumerLagReader(settings.kafka, watched_groups(settings))
    exporter = OpsExporter(lag_reader.read, purge_reader(pool), settings.read_timeout_s)
    runner = web.AppRunner(exporter.app(), access_log=None)
    try:
        await runner.setup()
        await web.TCPSite(runner, settings.host, settings.port).start()
        log.info(
            "ops_exporter_started",
            port=settings.port,
            groups=[group.group_id for group in watched_groups(settings)],
        )
        if started is not None:
            started(settings.host, settings.port)
        await stop.wait()
    finally:
        await runner.cleanup()
        await lag_reader.close()
        await pool.close()
