"""Fixtures shared by the integration and end-to-end tests: a fresh database and a fresh set of
topics for every test, on the real local PostgreSQL and Kafka (`make infra` starts them); and,
for the TLS refusal tests at every level, certificates made per module."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr

from services.core.db import migrate_dsn
from services.core.events import Topics
from services.core.kafka import ensure_topics
from services.core.settings import (
    DEFAULT_DATABASE_URL,
    DeploymentMode,
    KafkaSettings,
    PostgresSettings,
)
from tests.service_env import strip_project_variables
from tests.tls_server import Certificates, make_certificates


def pytest_configure(config: pytest.Config) -> None:
    """Nothing the shell that ran the tests exported for the project (a `DATABASE_URL`, a
    `KAFKA_*`, ...) reaches what a test builds: the variables are dropped before any test is
    collected. Then one is set, by the suite itself: local mode, since the tests run against the
    local stack with its development password and tokens, so a settings object a test builds
    without naming the mode is never a production one. The services the tests start get their
    environment from `tests.service_env.service_env`, never this process's."""
    strip_project_variables(os.environ)
    os.environ["DEPLOYMENT_MODE"] = DeploymentMode.LOCAL.value


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


# The local stack's PostgreSQL (`make infra`, deploy/local/env.sh), named here, not read from
# the environment.
STACK_DSN = DEFAULT_DATABASE_URL
ADMIN_DSN = _with_database(STACK_DSN, "postgres")


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(ADMIN_DSN)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _load_reference(dsn: str) -> None:
    from services.core.reference_store import load_into_database

    connection = await asyncpg.connect(dsn)
    try:
        await load_into_database(connection)
    finally:
        await connection.close()


class DatabaseFactory:
    """Creates databases cloned from a migrated template (fast), and drops them afterwards."""

    def __init__(self) -> None:
        self._templates: dict[str, str] = {}

    async def template(self, package: str) -> str:
        if package not in self._templates:
            name = f"tpl_{os.getpid()}_{len(self._templates)}"
            await _admin(f"DROP DATABASE IF EXISTS {name}")
            await _admin(f"CREATE DATABASE {name}")
            await migrate_dsn(_with_database(STACK_DSN, name), package)
            if package == "services.core.migrations":
                await _load_reference(_with_database(STACK_DSN, name))
            self._templates[package] = name
        return self._templates[package]

    async def create(self, package: str = "services.core.migrations") -> str:
        template = await self.template(package)
        name = f"t_{uuid.uuid4().hex[:16]}"
        await _admin(f"CREATE DATABASE {name} TEMPLATE {template}")
        return _with_database(STACK_DSN, name)

    @staticmethod
    async def drop(url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        await _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    async def drop_templates(self) -> None:
        for name in self._templates.values():
            await _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def database_factory() -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory()
    yield factory
    asyncio.run(factory.drop_templates())


@pytest.fixture
async def database_url(database_factory: DatabaseFactory) -> AsyncIterator[str]:
    """A fresh, migrated pipeline database for one test."""
    url = await database_factory.create()
    yield url
    await database_factory.drop(url)


@pytest.fixture
async def make_database(
    database_factory: DatabaseFactory,
) -> AsyncIterator[Callable[[str], object]]:
    """Fresh databases of another schema (e.g. the grant stand-in's migrations package)."""
    made: list[str] = []

    async def make(package: str) -> str:
        made.append(await database_factory.create(package))
        return made[-1]

    yield make
    for url in made:
        await database_factory.drop(url)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    from services.core.db import create_pool

    settings = PostgresSettings(
        database_url=SecretStr(database_url), deployment_mode=DeploymentMode.LOCAL
    )
    pool = await create_pool(settings)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA, a server certificate it signed, and another CA that signed nothing of the server's:
    made once per module (openssl), for the tests of TLS refusals."""
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def operator_token(database_url: str) -> str:
    """The token of the test database's first operator (created by the bootstrap, as the first
    `achievements operator create` does): what every operator command needs."""
    from datetime import UTC, datetime

    from services.core import operators

    connection = await asyncpg.connect(database_url)
    try:
        created = await operators.create(connection, "test-operator", None, datetime.now(UTC))
    finally:
        await connection.close()
    return created.token


@pytest.fixture
async def kafka_settings() -> AsyncIterator[KafkaSettings]:
    """Kafka settings whose topics belong to this test alone (a unique prefix)."""
    settings = KafkaSettings(
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        topic_partitions=4,
        deployment_mode=DeploymentMode.LOCAL,
    )
    topics = Topics(settings.topic_prefix)
    await ensure_topics(settings, topics)
    yield settings
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        await admin.delete_topics(topics.all())
    finally:
        await admin.close()


@pytest.fixture
def topics(kafka_settings: KafkaSettings) -> Topics:
    return Topics(kafka_settings.topic_prefix)
