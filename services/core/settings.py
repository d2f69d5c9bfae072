"""Settings shared by every service: where PostgreSQL and Kafka are, and where files live.

Each service has its own settings class with its own `env_prefix`; these groups read
unprefixed variables so one stack configuration serves every process.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import parse_qs, urlsplit

from pydantic import AliasChoices, BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.scheme.file_inspection import DEFAULT_SIZE_LIMIT_BYTES
from services.core.scheme.outcome import DEFAULT_ROW_LIMIT

DEFAULT_DATABASE_URL = "postgresql://achievements:achievements@127.0.0.1:55432/achievements"


# --- Deployment mode and secrets -----------------------------------------------------------------
# The development defaults (the local database password, the grant tokens) apply only when
# DEPLOYMENT_MODE=local is set explicitly; anywhere else a missing secret stops the process.

DEPLOYMENT_MODE_VARIABLE = "DEPLOYMENT_MODE"
# The local stack's database password (deploy/local/env.sh); never accepted outside local mode.
DEV_DATABASE_PASSWORD = "achievements"  # noqa: S105 (the local stack's well-known password)

# libpq's variable for the TLS mode, which asyncpg reads when the URL names none.
SSL_MODE_VARIABLE = "PGSSLMODE"
# The TLS modes that check the server's certificate; `require` encrypts but trusts any server.
VERIFYING_SSL_MODES = frozenset({"verify-full", "verify-ca"})
# HMAC-SHA256 keys shorter than its 32-byte output are weaker than the hash they key.
MIN_KEY_BYTES = 32
# The placeholders the repository's example files carry for secrets
# (deploy/kubernetes/secrets.example.yaml), upper-case: a copied example is refused even when
# padded to length. tests/unit/core/test_core_production_settings.py reads the example files.
EXAMPLE_PLACEHOLDERS = ("CHANGE-ME", "CHANGEME")


class DeploymentMode(StrEnum):
    LOCAL = "local"
    PRODUCTION = "production"


class DeploymentModeField(BaseModel):
    """`DEPLOYMENT_MODE`, unprefixed whatever the settings class's prefix; production if unset."""

    deployment_mode: DeploymentMode = Field(
        default=DeploymentMode.PRODUCTION,
        validation_alias=AliasChoices("deployment_mode", DEPLOYMENT_MODE_VARIABLE),
    )

    @property
    def is_local(self) -> bool:
        return self.deployment_mode is DeploymentMode.LOCAL


class SslModeField(BaseModel):
    """`PGSSLMODE`, unprefixed whatever the settings class's prefix. asyncpg reads the variable
    itself; it is read here too only so that a production URL without verified TLS is refused at
    start (`require_database_url`)."""

    pgsslmode: str | None = Field(
        default=None, validation_alias=AliasChoices("pgsslmode", SSL_MODE_VARIABLE)
    )


def require_secret(
    settings: DeploymentModeField, field: str, variable: str, dev_value: str
) -> None:
    """Outside local mode the secret `field` must be set, non-empty and not the development value.

    Messages name the variable, never the value.
    """
    if settings.is_local:
        return
    value: SecretStr = getattr(settings, field)
    if field not in settings.model_fields_set or not value.get_secret_value():
        raise ValueError(f"{variable} must be set ({DEPLOYMENT_MODE_VARIABLE} is not 'local')")
    if value.get_secret_value() == dev_value:
        raise ValueError(
            f"{variable} is the development default, refused ({DEPLOYMENT_MODE_VARIABLE} is not"
            " 'local')"
        )


def require_database_url(
    settings: DeploymentModeField, field: str, variable: str, environment_ssl_mode: str | None
) -> None:
    """Outside local mode the database URL must be set, carry a password other than the local
    stack's, and ask for TLS that verifies the server (`sslmode` `verify-full` or `verify-ca`),
    in the URL or, when the URL names none, in `environment_ssl_mode` (PGSSLMODE): asyncpg
    takes the URL's first, as libpq does. A URL with `sslmode=disable` or `prefer` would send
    learners' data in clear text, or to any server that answers."""
    require_secret(settings, field, variable, dev_value="")
    if settings.is_local:
        return
    url: SecretStr = getattr(settings, field)
    parts = urlsplit(url.get_secret_value())
    query = parse_qs(parts.query)
    password = parts.password or next(iter(query.get("password", [])), "")
    if not password or password == DEV_DATABASE_PASSWORD:
        raise ValueError(
            f"{variable} has no password or the development one, refused"
            f" ({DEPLOYMENT_MODE_VARIABLE} is not 'local')"
        )
    ssl_mode = next(iter(query.get("sslmode", [])), None) or environment_ssl_mode
    if ssl_mode not in VERIFYING_SSL_MODES:
        raise ValueError(
            f"{variable} must ask for verified TLS: sslmode=verify-full (or verify-ca) in the URL"
            f" or {SSL_MODE_VARIABLE} ({DEPLOYMENT_MODE_VARIABLE} is not 'local')"
        )


def require_strong_key(
    settings: DeploymentModeField, field: str, variable: str, dev_value: str
) -> None:
    """Outside local mode a key must be set, at least `MIN_KEY_BYTES` long, and none of the
    values the repository shows (the development default, the examples' placeholders): a key
    anyone can read in the repository, or guess, keys nothing."""
    require_secret(settings, field, variable, dev_value)
    if settings.is_local:
        return
    value: SecretStr = getattr(settings, field)
    key = value.get_secret_value()
    if any(placeholder in key.upper() for placeholder in EXAMPLE_PLACEHOLDERS):
        raise ValueError(
            f"{variable} is an example value, refused ({DEPLOYMENT_MODE_VARIABLE} is not 'local')"
        )
    if len(key.encode()) < MIN_KEY_BYTES:
        raise ValueError(
            f"{variable} must be at least {MIN_KEY_BYTES} bytes"
            f" ({DEPLOYMENT_MODE_VARIABLE} is not 'local')"
        )


def require_https(settings: DeploymentModeField, field: str, variable: str) -> None:
    """Outside local mode a URL that carries a bearer token and learners' data must be https."""
    if settings.is_local:
        return
    parts = urlsplit(getattr(settings, field))
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise ValueError(
            f"{variable} must be an https URL ({DEPLOYMENT_MODE_VARIABLE} is not 'local')"
        )


_Settings = TypeVar("_Settings")


def settings_problems(invalid: ValidationError) -> str:
    """Each invalid setting's name and its problem, `; `-separated: never an input value (it
    may be a secret)."""
    problems = []
    for problem in invalid.errors(include_url=False, include_context=False, include_input=False):
        message = problem["msg"].removeprefix("Value error, ")
        where = ".".join(str(part) for part in problem["loc"])
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def load_settings(factory: Callable[[], _Settings], process: str) -> _Settings:
    """Builds a process's settings at start; invalid ones end it with one line on stderr
    (the settings' names and the problem, never an input value) and exit status 2."""
    try:
        return factory()
    except ValidationError as invalid:
        print(f"{process}: invalid settings: {settings_problems(invalid)}", file=sys.stderr)
        raise SystemExit(2) from None


class PostgresSettings(BaseSettings, SslModeField, DeploymentModeField):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", hide_input_in_errors=True)

    # The default is the local stack's database, used only with DEPLOYMENT_MODE=local.
    # TLS is asked for in the URL, which asyncpg reads: `?sslmode=verify-full&sslrootcert=
    # /path/ca.crt` (and `sslcert`/`sslkey` for a client certificate), or the PGSSLMODE and
    # PGSSLROOTCERT variables (docs/operations.md).
    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    db_pool_min_size: int = 1
    db_pool_max_size: int = 10
    db_acquire_timeout_s: float = 10.0
    # Generous: deciding a 1,000,000-row upload runs single statements of tens of seconds.
    db_command_timeout_s: float = 600.0

    @model_validator(mode="after")
    def _secrets_outside_local(self) -> PostgresSettings:
        require_database_url(self, "database_url", "DATABASE_URL", self.pgsslmode)
        return self


class KafkaSettings(BaseSettings, DeploymentModeField):
    model_config = SettingsConfigDict(
        env_prefix="KAFKA_", extra="ignore", hide_input_in_errors=True
    )

    bootstrap_servers: str = "127.0.0.1:9092"
    # Lets several isolated pipelines (tests, staging) share one cluster.
    topic_prefix: str = ""
    topic_partitions: int = 4
    # For topics this process creates (`achievements admin topics`); a production cluster
    # wants 3 and 2, so a write acknowledged by `acks=all` survives the loss of one broker.
    replication_factor: int = Field(default=1, ge=1)
    min_insync_replicas: int = Field(default=1, ge=1)
    # KAFKA_CREATE_TOPICS: whether the processes create missing topics (`ensure_topics`). Off in
    # production, where Strimzi's Topic Operator owns them (deploy/topology.yaml): a second
    # owner would create them with other settings than the declared ones.
    create_topics: bool = True
    # How to reach the brokers: PLAINTEXT locally; SASL_SSL on a managed cluster. Outside local
    # mode only SSL and SASL_SSL are accepted.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    # TLS: the CA that signed the brokers' certificates (the system's CAs when unset), and a
    # client certificate and key for clusters that authenticate clients by certificate.
    ssl_ca_file: Path | None = None
    ssl_cert_file: Path | None = None
    ssl_key_file: Path | None = None

    @model_validator(mode="after")
    def _consistent_security(self) -> KafkaSettings:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError("min_insync_replicas must not exceed replication_factor")
        if self.security_protocol.startswith("SASL_") and not (
            self.sasl_username and self.sasl_password.get_secret_value()
        ):
            raise ValueError(
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD must be set for"
                f" KAFKA_SECURITY_PROTOCOL={self.security_protocol}"
            )
        if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
            raise ValueError("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together")
        # Events carry no learner data, but SASL passwords and the topics' integrity do need TLS.
        if not self.is_local and self.security_protocol not in ("SSL", "SASL_SSL"):
            raise ValueError(
                "KAFKA_SECURITY_PROTOCOL must be SSL or SASL_SSL"
                f" ({DEPLOYMENT_MODE_VARIABLE} is not 'local')"
            )
        return self


# Where uploaded files live (folder or S3), and how log lines look (LOG_FORMAT, NO_COLOR): the
# storage package and the logging module own those settings.
from services.core.logging import LogOutput  # noqa: E402
from services.core.storage.settings import StorageSettings as StorageSettings  # noqa: E402


class CommonSettings(BaseSettings):
    """The groups every pipeline service needs."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    log_level: str = "INFO"
    log_output: LogOutput = Field(default_factory=LogOutput)


class SchemeLimits(BaseSettings):
    """The scheme's configurable file limits (section 5: FILE_03 and FILE_05), one group read by
    the gateway, the validator and `achievements check`, so they never disagree.

    The bounds of one record (section 8) are scheme constants, not settings.
    """

    model_config = SettingsConfigDict(env_prefix="SCHEME_", extra="ignore")

    # FILE_03: 200 MB is 200 x 1024 x 1024 bytes.
    max_upload_bytes: int = Field(default=DEFAULT_SIZE_LIMIT_BYTES, gt=0)
    # FILE_05: non-blank data rows.
    max_rows: int = Field(default=DEFAULT_ROW_LIMIT, gt=0)


# The local stack's retention key; never accepted outside local mode.
DEV_RETENTION_KEY_SECRET = "dev-retention-key-secret"  # noqa: S105 (a development default)


class RetentionSettings(BaseSettings, DeploymentModeField):
    """How long learner data is kept, and the key of the hashes that outlive it
    (docs/retention.md). Read by `achievements purge`, the learner requests and the validator
    (DUP_02 against purged achievements)."""

    model_config = SettingsConfigDict(
        env_prefix="RETENTION_", extra="ignore", hide_input_in_errors=True
    )

    # RETENTION_DAYS: an upload's file, masked values and learner fields are kept this long
    # after its outcome (the later of validated and withdrawn).
    days: int = Field(default=30, gt=0)
    # RETENTION_SECONDS: a retention shorter than a day, for tests and the soak run (which must
    # see purges within its hour); it replaces `days` when set, and is refused in production.
    seconds: int | None = Field(default=None, gt=0)
    # RETENTION_KEY_SECRET: the HMAC key of the purged duplicate keys. Required unless
    # DEPLOYMENT_MODE=local, at least 32 bytes and no example value; changing it makes the purged
    # keys unmatchable (DUP_02 misses them).
    key_secret: SecretStr = SecretStr(DEV_RETENTION_KEY_SECRET)
    # Achievements changed per transaction.
    batch_size: int = Field(default=500, gt=0)
    # Uploads purged per transaction: each may have up to `VALIDATOR_MAX_STORED_ISSUES` issues
    # whose masked values are cleared in the same transaction.
    upload_batch_size: int = Field(default=20, gt=0)
    # A `.part` file this old belongs to no upload still being received.
    part_file_max_age_s: float = Field(default=24 * 3600, gt=0)
    # RETENTION_SENT_EVENTS_KEPT_S: an outbox row Kafka acknowledged is deleted this long after
    # (kept a while to read what was sent when something looks wrong).
    sent_events_kept_s: int = Field(default=3600, ge=0)
    # RETENTION_PROCESSED_EVENTS_KEPT_S: a consumer's record of an applied event is kept longer
    # than the topics keep events (7 days, deploy/topology.yaml), so a replay from the start of
    # a topic still finds every event it applied.
    processed_events_kept_s: int = Field(default=8 * 86400, ge=0)
    # Work rows deleted per statement.
    work_batch_size: int = Field(default=5000, gt=0)

    @model_validator(mode="after")
    def _secrets_outside_local(self) -> RetentionSettings:
        require_strong_key(self, "key_secret", "RETENTION_KEY_SECRET", DEV_RETENTION_KEY_SECRET)
        if self.seconds is not None and self.deployment_mode is DeploymentMode.PRODUCTION:
            raise ValueError(
                "RETENTION_SECONDS is for tests and the soak run: production keeps RETENTION_DAYS"
            )
        return self

    @property
    def period(self) -> timedelta:
        """How long after its outcome an upload's learner data is kept."""
        if self.seconds is not None:
            return timedelta(seconds=self.seconds)
        return timedelta(days=self.days)
