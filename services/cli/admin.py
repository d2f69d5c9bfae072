"""`achievements admin migrate|topics|migrated`: the database schema and the Kafka topics, as
the deployment's migrate Job and the services' init containers run them."""

from __future__ import annotations

import asyncio
import time
from typing import Final

import asyncpg
import click
from aiokafka.admin import AIOKafkaAdminClient

from services.cli.connect import database, start_kafka
from services.cli.context import CliContext, pass_cli
from services.cli.failures import CommandFailed, ExitCode
from services.cli.options import CONTEXT_SETTINGS, json_option
from services.cli.output import print_json, run
from services.cli.settings import build_settings
from services.core.db import migrate as apply_migrations
from services.core.db import migration_files
from services.core.events import Topics
from services.core.kafka import connection_options, ensure_topics
from services.core.logging import get_logger
from services.core.settings import CommonSettings, KafkaSettings

log = get_logger()

# Between two looks at the schema while `migrated --wait-s` waits for the migrate Job.
MIGRATED_POLL_S: Final = 2.0


@click.group(context_settings=CONTEXT_SETTINGS, help="Set up the database and the topics.")
def admin() -> None:
    pass


@admin.command(help="Apply the migrations not applied yet (safe when several run at once).")
@json_option
@pass_cli
def migrate(context: CliContext, as_json: bool) -> int:
    async def command() -> int:
        common = build_settings(CommonSettings)
        async with database(common.postgres, context.connect_timeout_s) as connection:
            applied = await apply_migrations(connection)
        if as_json:
            print_json({"applied": applied})
        else:
            print(f"migrations applied: {len(applied)}")
        return ExitCode.OK

    return run(command, as_json)


class _AdminClient:
    """aiokafka's admin client as `start_kafka` starts and stops clients."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._client = AIOKafkaAdminClient(**connection_options(settings))

    async def start(self) -> None:
        await self._client.start()

    async def stop(self) -> None:
        await self._client.close()


@admin.command(help="Create the contract's topics that are missing.")
@json_option
@pass_cli
def topics(context: CliContext, as_json: bool) -> int:
    async def command() -> int:
        kafka = build_settings(CommonSettings).kafka
        if kafka.create_topics:
            # `ensure_topics` would wait for a broker for minutes: reach one first, within the
            # connect timeout, then let it do the work.
            probe = _AdminClient(kafka)
            await start_kafka(probe, kafka, context.connect_timeout_s)
            await probe.stop()
        # With KAFKA_CREATE_TOPICS=false it leaves the topics to their owner (Strimzi).
        pipeline_topics = Topics(kafka.topic_prefix)
        await ensure_topics(kafka, pipeline_topics, attempts=1)
        if as_json:
            print_json({"topics": list(pipeline_topics.all()), "created": kafka.create_topics})
        else:
            print("topics ready" if kafka.create_topics else "topics left to their owner")
        return ExitCode.OK

    return run(command, as_json)


async def _applied_migrations(connection: asyncpg.Connection) -> set[str]:
    if await connection.fetchval("SELECT to_regclass('schema_migrations')") is None:
        return set()
    return {row["name"] for row in await connection.fetch("SELECT name FROM schema_migrations")}


async def _missing_migrations(common: CommonSettings, timeout_s: float) -> list[str]:
    wanted = {name for name, _ in migration_files("services.core.migrations")}
    async with database(common.postgres, timeout_s) as connection:
        return sorted(wanted - await _applied_migrations(connection))


@admin.command(
    help="Exit 0 once every migration of this image is applied; an init container runs it so"
    " that no service starts on an older schema. Exit 1 when some are still missing after"
    " --wait-s, 4 when the database could not be reached."
)
@click.option("--wait-s", type=click.FloatRange(min=0), default=0.0, help="wait this long for them")
@json_option
@pass_cli
def migrated(context: CliContext, wait_s: float, as_json: bool) -> int:
    async def command() -> int:
        common = build_settings(CommonSettings)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                missing = await _missing_migrations(common, context.connect_timeout_s)
            except CommandFailed as unreachable:
                if time.monotonic() >= deadline:
                    raise
                log.warning("database_waited_for", code=unreachable.code)
            else:
                if not missing:
                    print_json({"migrated": True}) if as_json else print("migrations applied: all")
                    return ExitCode.OK
                if time.monotonic() >= deadline:
                    raise CommandFailed(
                        ExitCode.NOTHING_ACCEPTED,
                        "MIGRATIONS_MISSING",
                        f"migrations missing: {', '.join(missing)}",
                    )
            await asyncio.sleep(MIGRATED_POLL_S)

    return run(command, as_json)
