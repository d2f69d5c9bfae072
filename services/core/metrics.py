"""The pipeline's Prometheus metrics, one registry per process, served as text on `/metrics`.

Every service exposes this registry: the workers on their own small HTTP port
(services/core/worker_http.py), the gateway next to its per-app request metrics.

Labels carry only fixed vocabularies: a stage, a topic, a partition number, a result, an issue
code, an upload status, a claim outcome. Never an upload id, an ATO id, a file name or anything
read from a row, so no series holds personal data and the number of series stays bounded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import generate_latest

REGISTRY: Final = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# Seconds: from a quick chunk to a 200 MB upload decided.
_DURATION_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
# Seconds of one step of a small upload's path (`PIPELINE_STEP`): milliseconds matter there.
_STEP_BUCKETS: Final = (
    *(0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25),
    *(0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
_REQUEST_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# --- Kafka consumers (services/core/consumer.py) ------------------------------------------------
CONSUMER_LAG: Final = Gauge(
    "kafka_consumer_lag_messages",
    "Records on a partition after the consumer's position (high watermark minus position).",
    ["stage", "topic", "partition"],
    registry=REGISTRY,
)
CONSUMER_RECORDS: Final = Counter(
    "kafka_consumer_records",
    "Records handled by the consumer loop, by outcome: done, retry_later, dead_lettered.",
    ["stage", "topic", "outcome"],
    registry=REGISTRY,
)
CONSUMER_ASSIGNED: Final = Gauge(
    "kafka_consumer_assigned_partitions",
    "Partitions assigned to this process's consumer.",
    ["stage"],
    registry=REGISTRY,
)
DEAD_LETTERS: Final = Counter(
    "kafka_dead_letters",
    "Records sent to the dead-letter topic, by the stage that gave up on them.",
    ["stage", "source_topic"],
    registry=REGISTRY,
)

# --- Outbox (services/core/outbox.py) -----------------------------------------------------------
OUTBOX_PUBLISHED: Final = Counter(
    "outbox_events_published",
    "Outbox events this process relayed to Kafka.",
    registry=REGISTRY,
)
OUTBOX_RELAY_FAILURES: Final = Counter(
    "outbox_relay_failures",
    "Relay rounds that failed (database or Kafka unavailable); the rows are sent later.",
    registry=REGISTRY,
)
OUTBOX_BACKLOG: Final = Gauge(
    "outbox_backlog_events",
    "Outbox events not yet relayed to Kafka (whole pipeline), counted at scrape time.",
    registry=REGISTRY,
)
OUTBOX_OLDEST_AGE: Final = Gauge(
    "outbox_oldest_unsent_age_seconds",
    "Age of the oldest outbox event not yet relayed, counted at scrape time.",
    registry=REGISTRY,
)

# --- PostgreSQL pool ---------------------------------------------------------------------------
POOL_WAIT: Final = Histogram(
    "db_pool_acquire_wait_seconds",
    "Time spent waiting for a pooled PostgreSQL connection.",
    registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
POOL_CONNECTIONS: Final = Gauge(
    "db_pool_connections",
    "Connections of this process's pool, by state (in_use, idle, max), at scrape time.",
    ["state"],
    registry=REGISTRY,
)

# --- Validator ---------------------------------------------------------------------------------
ROWS_VALIDATED: Final = Counter(
    "validator_rows_validated",
    "Rows of decided uploads, by result: valid (warnings included) or invalid.",
    ["result"],
    registry=REGISTRY,
)
ISSUES: Final = Counter(
    "validator_issues",
    "Row issues found in decided uploads, by scheme code (errors and warnings).",
    ["code"],
    registry=REGISTRY,
)
UPLOADS_DECIDED: Final = Counter(
    "validator_uploads_decided",
    "Uploads decided, by final status.",
    ["status"],
    registry=REGISTRY,
)
DECISIONS_DEFERRED: Final = Counter(
    "validator_decisions_deferred",
    "Decisions left to the worker deciding another upload of the same ATO (never waited for).",
    registry=REGISTRY,
)
UPLOAD_DURATION: Final = Histogram(
    "validator_upload_duration_seconds",
    "From an upload received by the gateway to its outcome decided, by final status.",
    ["status"],
    registry=REGISTRY,
    buckets=_DURATION_BUCKETS,
)
CHUNK_DURATION: Final = Histogram(
    "validator_chunk_duration_seconds",
    "Time to validate and write one chunk task.",
    registry=REGISTRY,
    buckets=_DURATION_BUCKETS,
)
# Where a small upload's time goes, hop by hop (bench/bench_latency.py reads it): the outbox
# relay (the writing transaction's start, `outbox.created_at`, to Kafka's acknowledgement: a
# long transaction, such as a big decision, counts in it), the Kafka delivery (the producer's
# timestamp to the planner's handler), the planning, the chunk queue (planned to leased), a
# chunk (validated and written) and the decision. Buckets fine enough for milliseconds.
PIPELINE_STEP: Final = Histogram(
    "pipeline_step_seconds",
    "Time an upload or event spent in one step of the pipeline, by step.",
    ["step"],
    registry=REGISTRY,
    buckets=_STEP_BUCKETS,
)
CHUNK_TASKS: Final = Gauge(
    "validator_chunk_tasks",
    "Chunk tasks not yet done (pipeline-wide), by state: queued or leased, at scrape time.",
    ["state"],
    registry=REGISTRY,
)

UPLOADS_UNDECIDED: Final = Gauge(
    "validator_uploads_undecided",
    "Uploads received or validating (pipeline-wide), at scrape time.",
    registry=REGISTRY,
)
OLDEST_UNDECIDED_AGE: Final = Gauge(
    "validator_oldest_undecided_upload_age_seconds",
    "Age of the oldest upload still received or validating, at scrape time (0: none).",
    registry=REGISTRY,
)

# --- Storage (the gateway's volume, shared with the validators) --------------------------------
STORAGE_FREE: Final = Gauge(
    "storage_free_bytes",
    "Free bytes on the storage volume, at scrape time.",
    registry=REGISTRY,
)
STORAGE_SIZE: Final = Gauge(
    "storage_size_bytes",
    "Size of the storage volume in bytes, at scrape time.",
    registry=REGISTRY,
)

# --- Grant bridge ------------------------------------------------------------------------------
CLAIMS: Final = Counter(
    "grant_bridge_claims",
    "Claim outcomes recorded, by outcome: accepted, refused, retrying, lost_lease.",
    ["outcome"],
    registry=REGISTRY,
)
GRANT_REQUEST_DURATION: Final = Histogram(
    "grant_bridge_request_duration_seconds",
    "Grant API call latency, by kind (batch, single), whatever the answer.",
    ["kind"],
    registry=REGISTRY,
    buckets=_REQUEST_BUCKETS,
)
BREAKER_STATE: Final = Gauge(
    "grant_bridge_breaker_state",
    "1 for the grant API circuit breaker's current state (closed, open, half_open), else 0.",
    ["state"],
    registry=REGISTRY,
)
BREAKER_STATES: Final = ("closed", "open", "half_open")


class ClaimCounts(Protocol):
    """What one round of the forwarder recorded (grant_bridge.claims.Recorded)."""

    @property
    def accepted(self) -> int: ...
    @property
    def refused(self) -> int: ...
    @property
    def retrying(self) -> int: ...
    @property
    def lost_lease(self) -> int: ...


def record_claim_outcomes(recorded: ClaimCounts) -> None:
    for outcome in ("accepted", "refused", "retrying", "lost_lease"):
        count: int = getattr(recorded, outcome)
        if count:
            CLAIMS.labels(outcome).inc(count)


def set_breaker_state(state: str) -> None:
    for name in BREAKER_STATES:
        BREAKER_STATE.labels(name).set(1 if name == state else 0)


def record_upload_outcome(
    status: str,
    *,
    rows_total: int,
    rows_invalid: int,
    by_code: Mapping[str, int],
    received_s_ago: float | None = None,
) -> None:
    """An upload's final figures, counted once when its outcome is decided."""
    UPLOADS_DECIDED.labels(status).inc()
    ROWS_VALIDATED.labels("valid").inc(max(0, rows_total - rows_invalid))
    ROWS_VALIDATED.labels("invalid").inc(rows_invalid)
    for code, count in by_code.items():
        ISSUES.labels(code).inc(count)
    if received_s_ago is not None:
        UPLOAD_DURATION.labels(status).observe(max(0.0, received_s_ago))


def set_pool_gauges(size: int, idle: int, max_size: int) -> None:
    POOL_CONNECTIONS.labels("in_use").set(size - idle)
    POOL_CONNECTIONS.labels("idle").set(idle)
    POOL_CONNECTIONS.labels("max").set(max_size)


def exposition(*registries: CollectorRegistry) -> bytes:
    """This process's metrics (and those of `registries`) in the Prometheus text format."""
    return b"".join(generate_latest(registry) for registry in (*registries, REGISTRY))


CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
