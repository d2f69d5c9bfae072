"""A refusal no retry can fix (a certificate, a login, an ACL) names the setting to correct and
is never taken for an outage; a lost connection or a failover still is. The TLS cases are real
clients (asyncpg, aiokafka) meeting a real TLS server whose certificate they cannot verify."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    AuthenticationFailedError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnsupportedSaslMechanismError,
)

from services.core import db, kafka
from services.core.misconfiguration import ConfigurationError, run_service, tls_refusal
from services.core.settings import KafkaSettings, PostgresSettings
from tests.tls_server import Certificates, needs_openssl, tls_server

# Bounds a test that, were the error taken for an outage, would wait for ever.
NEVER_S = 20.0


def _database_url(port: int, ca_file: Path) -> str:
    return (
        f"postgresql://achievements:secret@localhost:{port}/achievements"
        f"?sslmode=verify-full&sslrootcert={ca_file}"
    )


def _kafka_settings(port: int, ca_file: Path) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=f"localhost:{port}", security_protocol="SSL", ssl_ca_file=ca_file
    )


# PostgreSQL.


@needs_openssl
async def test_a_database_certificate_from_another_ca_names_database_url(
    certificates: Certificates,
) -> None:
    async with tls_server(certificates, postgres=True) as port:
        with pytest.raises(ConfigurationError) as raised:
            await db.connect(_database_url(port, certificates.other_ca_file), timeout=5)

    assert raised.value.setting == "DATABASE_URL"
    assert "certificate did not verify" in raised.value.reason


@needs_openssl
async def test_a_pool_is_not_waited_for_when_the_certificate_does_not_verify(
    certificates: Certificates,
) -> None:
    """Before, the `ssl` error counted as a lost connection (`OSError`): waited out for ever."""
    async with tls_server(certificates, postgres=True) as port:
        settings = PostgresSettings(
            database_url=_database_url(port, certificates.other_ca_file), db_pool_min_size=1
        )
        async with asyncio.timeout(NEVER_S):
            with pytest.raises(ConfigurationError) as raised:
                await db.create_pool(settings)

    assert raised.value.setting == "DATABASE_URL"


@needs_openssl
async def test_a_trusted_database_that_drops_the_connection_is_only_unavailable(
    certificates: Certificates,
) -> None:
    async with tls_server(certificates, postgres=True) as port:
        with pytest.raises((OSError, asyncpg.PostgresConnectionError)) as raised:
            await db.connect(_database_url(port, certificates.ca_file), timeout=5)

    assert not isinstance(raised.value, ConfigurationError)
    assert db.is_transient(raised.value)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.InvalidPasswordError("password authentication failed"),
        asyncpg.InvalidAuthorizationSpecificationError("no pg_hba.conf entry"),
        asyncpg.InvalidCatalogNameError("database does not exist"),
    ],
)
def test_a_refused_login_names_database_url(error: BaseException) -> None:
    problem = db.configuration_problem(error)

    assert problem is not None
    assert problem.setting == "DATABASE_URL"
    assert type(error).__name__ in problem.reason


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(),
        ConnectionResetError(),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
        ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
        TimeoutError(),
    ],
)
def test_failover_and_lost_connections_stay_transient(error: BaseException) -> None:
    assert db.configuration_problem(error) is None
    assert db.is_transient(error)


def test_a_configuration_error_is_never_caught_as_transient() -> None:
    assert not db.is_transient(ConfigurationError("DATABASE_URL", "refused"))


# Kafka.


@needs_openssl
async def test_a_broker_certificate_from_another_ca_names_the_ca_setting(
    certificates: Certificates,
) -> None:
    async with tls_server(certificates) as port:
        problem = await kafka.diagnose_connection(
            _kafka_settings(port, certificates.other_ca_file), timeout_s=5
        )

    assert problem is not None
    assert problem.setting == "KAFKA_SSL_CA_FILE"
    assert "certificate did not verify" in problem.reason


@needs_openssl
async def test_a_producer_refused_by_tls_raises_the_setting_instead_of_a_bare_connection_error(
    certificates: Certificates,
) -> None:
    """aiokafka itself reports only "Unable to bootstrap"; the diagnosis finds the cause."""
    async with tls_server(certificates) as port:
        settings = _kafka_settings(port, certificates.other_ca_file)
        producer = AIOKafkaProducer(**kafka.connection_options(settings), request_timeout_ms=5000)
        try:
            with pytest.raises(ConfigurationError) as raised:
                await kafka.start_client(producer, settings)
        finally:
            await producer.stop()

    assert raised.value.setting == "KAFKA_SSL_CA_FILE"


@needs_openssl
async def test_a_trusted_broker_that_drops_the_connection_is_not_a_setting(
    certificates: Certificates,
) -> None:
    async with tls_server(certificates) as port:
        problem = await kafka.diagnose_connection(
            _kafka_settings(port, certificates.ca_file), timeout_s=5
        )

    assert problem is None


async def test_no_broker_listening_is_not_a_setting(unused_tcp_port: int) -> None:
    settings = KafkaSettings(bootstrap_servers=f"127.0.0.1:{unused_tcp_port}")

    assert await kafka.diagnose_connection(settings, timeout_s=5) is None


@pytest.mark.parametrize(
    ("error", "setting"),
    [
        (SaslAuthenticationFailed(), "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
        (AuthenticationFailedError(), "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
        (UnsupportedSaslMechanismError(), "KAFKA_SASL_MECHANISM"),
        (TopicAuthorizationFailedError(), "KAFKA_TOPIC_PREFIX"),
        (GroupAuthorizationFailedError(), "KAFKA_TOPIC_PREFIX"),
        (ClusterAuthorizationFailedError(), "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
    ],
)
def test_kafka_logins_and_acls_refused_name_their_setting(
    error: BaseException, setting: str
) -> None:
    problem = kafka.configuration_problem(error)

    assert problem is not None
    assert problem.setting == setting
    assert type(error).__name__ in problem.reason


@pytest.mark.parametrize(
    "error",
    [
        KafkaConnectionError("Unable to bootstrap"),
        NotLeaderForPartitionError(),
        RequestTimedOutError(),
        ConnectionResetError(),
    ],
)
def test_kafka_outages_and_leader_moves_are_not_settings(error: BaseException) -> None:
    assert kafka.configuration_problem(error) is None


def test_a_tls_refusal_is_found_inside_the_error_that_wraps_it() -> None:
    inner = ssl.SSLCertVerificationError(1, "certificate verify failed")
    inner.verify_message = "unable to get local issuer certificate"
    try:
        try:
            raise inner
        except ssl.SSLError as error:
            raise KafkaConnectionError("Unable to connect") from error
    except KafkaConnectionError as wrapped:
        reason = tls_refusal(wrapped)

    assert reason == "the server's TLS certificate did not verify (unable to get local issuer" + (
        " certificate)"
    )


# The process.


async def _refused() -> None:
    raise ConfigurationError("KAFKA_SSL_CA_FILE", "the server's TLS certificate did not verify")


def test_a_refused_setting_ends_the_process_with_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main: Coroutine[Any, Any, None] = _refused()

    with pytest.raises(SystemExit) as exited:
        run_service(main, "validator")

    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "validator: configuration refused by a dependency: KAFKA_SSL_CA_FILE: the server's TLS"
        " certificate did not verify\n"
    )
