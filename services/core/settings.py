"""Settings shared by every service: where PostgreSQL and Kafka are, and where files live.

Each service has its own settings class with its own `env_prefix`; these groups read
unprefixed variables so one stack configuration serves every process.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "postgresql://achievements:achievements@127.0.0.1:55432/achievements"


class PostgresSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    db_pool_min_size: int = 1
    db_pool_max_size: int = 10
    db_acquire_timeout_s: float = 10.0
    # Generous: deciding a 1,000,000-row upload runs single statements of tens of seconds.
    db_command_timeout_s: float = 600.0


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    # Lets several isolated pipelines (tests, staging) share one cluster.
    topic_prefix: str = ""
    topic_partitions: int = 4
    replication_factor: int = 1


class StorageSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STORAGE_", extra="ignore")

    # A folder every worker can reach: local disk on one machine, a shared mount beyond it.
    root: Path = Path(".local/storage")


class AmendmentSettings(BaseSettings):
    """How long an accepted achievement is held for the ATO to withdraw it before it is claimed.

    The grant bridge owns the setting's name; the validator stamps `release_at` with it and the
    gateway and bridge read that column, so the window is decided once per achievement.
    """

    model_config = SettingsConfigDict(env_prefix="GRANT_BRIDGE_", extra="ignore")

    amendment_window_s: float = 2 * 24 * 3600


class CommonSettings(BaseSettings):
    """The groups every pipeline service needs."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    amendment: AmendmentSettings = Field(default_factory=AmendmentSettings)
    log_level: str = "INFO"
