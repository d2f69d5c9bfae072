"""The validator worker's settings (env prefix `VALIDATOR_`)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.settings import CommonSettings, RetentionSettings, SchemeLimits

# The amendment window's variable keeps the grant bridge's prefix: operators set it as the
# bridge's (the hold before a claim is sent), though only the validator reads it.
AMENDMENT_WINDOW_VARIABLE = "GRANT_BRIDGE_AMENDMENT_WINDOW_S"


class ValidatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VALIDATOR_", extra="ignore")

    worker_name: str = "validator"
    group_id: str = "validator"
    # A chunk task: at most this many bytes and records. Small enough that a 20-row upload
    # never waits long behind another ATO's chunk, large enough that a chunk's fixed costs
    # (a lease, a transaction, three COPYs) stay a small part of its time.
    chunk_bytes: int = 4 * 1024 * 1024
    chunk_rows: int = 20_000
    # An upload under `split_parts` chunks' worth is cut into `split_parts` chunks of at least
    # `split_min_bytes` (about 1,000 rows), so that the workers of every process validate and
    # write it side by side (a 10,000-row upload in two halves) instead of one doing it all.
    split_parts: int = Field(default=2, ge=1)
    split_min_bytes: int = Field(default=128 * 1024, ge=1)
    # A chunk leased longer than this (its worker died or stalled) is taken by another worker.
    chunk_lease_s: float = 60.0
    # A chunk that failed this often (not an outage: a bug or a poisonous record) ends its
    # upload as `errored`, so it never blocks the queue.
    chunk_max_attempts: int = 3
    # Chunk workers per process: the work is CPU-bound, so one per core a process has.
    chunk_workers: int = 1
    # Express chunk workers per process, beside those: they take only the chunks of uploads
    # of at most `express_max_bytes` (about 7,000 rows), so a small upload is validated at
    # once even while every chunk worker is busy with a big upload's chunk (a reserved slot).
    express_workers: int = Field(default=1, ge=0)
    express_max_bytes: int = Field(default=1024 * 1024, ge=0)
    # An idle chunk worker is woken when chunks are queued (PostgreSQL LISTEN/NOTIFY); it
    # also looks every `idle_poll_s`, for leases that ran out and uploads left undecided.
    idle_poll_s: float = Field(default=2.0, gt=0)
    # A busy chunk worker still looks this often for uploads whose chunks are all done and that
    # nobody decides (a decision deferred behind its ATO's lock whose holder had looked already).
    decide_sweep_s: float = Field(default=2.0, gt=0)
    # Stored issues per upload for the error report; counts per code stay exact beyond it.
    max_stored_issues: int = 10_000
    progress_interval_s: float = 1.0
    accepted_event_chunk: int = 1_000
    run_outbox_relay: bool = True
    # An upload whose planning raises this often is `errored` and dead-lettered (a bug, not
    # an outage).
    max_attempts: int = 3
    retry_delay_s: float = 1.0
    # SIGTERM: the whole drain (chunks finished or handed back, the relay's slots handed back,
    # Kafka and PostgreSQL closed) ends within this, under a cluster's default 30 s grace.
    drain_s: float = Field(default=20.0, gt=0)
    # `/metrics`, `/healthz` and `/readyz` on this port (services/core/worker_http.py); off
    # when unset, so several validators can share a machine without sharing a port.
    http_port: int | None = Field(default=None, ge=1, le=65535)
    # The file size limit (FILE_03) and row limit (FILE_05): `SCHEME_*` variables, shared with
    # the gateway and `achievements check`.
    limits: SchemeLimits = Field(default_factory=SchemeLimits)
    common: CommonSettings = Field(default_factory=CommonSettings)
    # DUP_02 against purged achievements needs the retention key: a missing one stops the
    # validator at start (outside local mode), not the first upload that needs it.
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    # How long an accepted achievement is held for the ATO to withdraw it before it is claimed.
    # The validator owns it because it is the one that reads it: it stamps `release_at` when it
    # decides an upload, and the gateway and the bridge read that column, so the window is
    # decided once per achievement. The variable is the bridge's (`AMENDMENT_WINDOW_VARIABLE`).
    amendment_window_s: float = Field(
        default=2 * 24 * 3600,
        ge=0,
        validation_alias=AliasChoices("amendment_window_s", AMENDMENT_WINDOW_VARIABLE),
    )

    def for_upload_of(self, size_bytes: int) -> ValidatorSettings:
        """The settings to plan an upload of `size_bytes` with: a small upload's chunks are
        cut smaller (`split_parts`, `split_min_bytes`), a big one's as configured."""
        split = max(self.split_min_bytes, -(-size_bytes // self.split_parts))
        if split >= self.chunk_bytes:
            return self
        return self.model_copy(update={"chunk_bytes": split})
