"""The gateway needs PostgreSQL and its storage folder to take uploads, and nothing else.

Kafka is not needed to start or to accept files: events wait in the outbox and are relayed, in
order, once Kafka is back. Readiness follows what uploads need: the database and the storage
folder (there, a folder, on the volume found at start, writable).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from gateway_helpers import (
    VALID_CSV,
    Client,
    ClientFactory,
    bearer,
    count_uploads,
    gateway_settings_for,
    stored_files,
)
from pydantic import SecretStr

from services.core.events import Topics, UploadProgress
from services.core.kafka import make_consumer
from services.core.outbox import enqueue
from services.core.settings import KafkaSettings, PostgresSettings
from services.core.storage import FolderStorage
from services.upload_gateway.app import create_app
from services.upload_gateway.appkeys import STORAGE
from services.upload_gateway.keys import NewKey
from tests.service_env import service_env

REPO_ROOT = Path(__file__).resolve().parents[3]


def closed_port() -> int:
    """A port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def replace_with_file(path: Path) -> None:
    shutil.rmtree(path)
    path.write_bytes(b"")


def restore_folder(path: Path) -> None:
    if path.is_file():
        path.unlink()
    path.mkdir()


async def upload(client: Client, ato: NewKey, body: bytes = VALID_CSV) -> aiohttp.ClientResponse:
    return await client.post(
        "/v1/uploads",
        data=body,
        params={"terms_accepted": "true"},
        headers={**bearer(ato), "Content-Type": "text/csv"},
    )


async def readiness(client: Client) -> tuple[int, dict[str, Any]]:
    response = await client.get("/readyz")
    body: dict[str, Any] = await response.json()
    return response.status, body


async def unsent_events(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch(
        "SELECT payload::json AS payload FROM outbox WHERE sent_at IS NULL ORDER BY id"
    )
    return [row["payload"]["event_type"] for row in rows]


class Forwarder:
    """A TCP port that refuses connections until `open()`, then forwards them to `target`:
    a Kafka bootstrap address that is down, then back."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port = port
        self._target = target
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._connect, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for pipe in self._pipes:
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            pipe = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.close()


@pytest.fixture
async def kafka_later(kafka_settings: KafkaSettings) -> AsyncIterator[Forwarder]:
    """A bootstrap address for this test's topics that answers only once opened."""
    host, port = kafka_settings.bootstrap_servers.split(",")[0].rsplit(":", 1)
    forwarder = Forwarder(closed_port(), (host, int(port)))
    yield forwarder
    await forwarder.close()


async def test_the_gateway_starts_ready_and_accepts_uploads_while_kafka_is_unreachable(
    make_client: ClientFactory, ato: NewKey, pool: asyncpg.Pool
) -> None:
    """Readiness is PostgreSQL and storage; the upload's event waits in the outbox."""
    unreachable = KafkaSettings(bootstrap_servers=f"127.0.0.1:{closed_port()}")
    client = await make_client(run_outbox_relay=True, kafka=unreachable)

    status, body = await readiness(client)
    assert status == 200, body
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["storage"] == "ok"
    assert body["checks"]["kafka"] in {"connecting", "unavailable"}

    response = await upload(client, ato)
    assert response.status == 202, await response.text()
    assert await unsent_events(pool) == ["upload.received"]
    assert (await client.get("/healthz")).status == 200


async def test_events_accepted_while_kafka_was_down_are_relayed_in_order_once_it_is_back(
    make_client: ClientFactory,
    kafka_later: Forwarder,
    kafka_settings: KafkaSettings,
    topics: Topics,
    ato: NewKey,
    pool: asyncpg.Pool,
) -> None:
    """Every event reaches Kafka, and the events of one key in the order they were written."""
    kafka = KafkaSettings(
        bootstrap_servers=f"127.0.0.1:{kafka_later.port}",
        topic_prefix=kafka_settings.topic_prefix,
        topic_partitions=kafka_settings.topic_partitions,
    )
    client = await make_client(run_outbox_relay=True, kafka=kafka)
    upload_ids = []
    for n in range(6):
        response = await upload(client, ato, VALID_CSV.replace(b"R1,", f"R{n},".encode()))
        assert response.status == 202, await response.text()
        upload_ids.append((await response.json())["upload_id"])
    # Several events per key, interleaved between keys, as validators write them.
    async with pool.acquire() as connection:
        for rows in range(1, 6):
            for upload_id in upload_ids:
                await enqueue(
                    connection,
                    topics,
                    UploadProgress(upload_id=uuid.UUID(upload_id), rows_processed=rows),
                )
    assert len(await unsent_events(pool)) == 6 + 6 * 5

    await kafka_later.open()
    consumer = make_consumer(
        kafka_settings, topics.uploads, topics.upload_status, group_id="t", client_id="t"
    )
    await consumer.start()
    received: list[tuple[str, str, int]] = []  # (key, event type, rows processed)
    try:
        async with asyncio.timeout(60):
            while len(received) < 6 + 6 * 5:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    for record in records:
                        event = json.loads(record.value)
                        received.append(
                            (
                                record.key.decode(),
                                event["event_type"],
                                event.get("rows_processed", 0),
                            )
                        )
    finally:
        await consumer.stop()
    assert sorted(key for key, kind, _ in received if kind == "upload.received") == sorted(
        upload_ids
    )
    for upload_id in upload_ids:
        progress = [
            rows for key, kind, rows in received if key == upload_id and kind != "upload.received"
        ]
        assert progress == [1, 2, 3, 4, 5], upload_id
    async with asyncio.timeout(10):
        while await unsent_events(pool):
            await asyncio.sleep(0.05)


async def test_a_missing_storage_folder_makes_the_gateway_not_ready_and_uploads_503(
    client: Client, ato: NewKey, pool: asyncpg.Pool, storage_root: Path
) -> None:
    """Not 500, and nothing recorded; both recover once the folder is back."""
    assert (await readiness(client))[0] == 200
    shutil.rmtree(storage_root)

    status, body = await readiness(client)
    assert status == 503
    assert body["checks"] == {"database": "ok", "storage": "unavailable", "kafka": "disabled"}
    response = await upload(client, ato)
    assert response.status == 503
    assert (await response.json())["code"] == "STORAGE_UNAVAILABLE"
    assert response.headers["Retry-After"] == "5"
    assert await count_uploads(pool) == 0
    assert stored_files(storage_root.parent) == [], "the upload recreated the storage folder"

    restore_folder(storage_root)
    assert (await readiness(client))[0] == 200
    assert (await upload(client, ato)).status == 202
    assert len(stored_files(storage_root)) == 1


async def test_a_storage_path_that_cannot_be_written_makes_the_gateway_not_ready(
    client: Client, ato: NewKey, storage_root: Path
) -> None:
    """A file where the folder should be: no probe file can be written in it."""
    replace_with_file(storage_root)

    status, body = await readiness(client)
    assert status == 503
    assert body["checks"]["storage"] == "unavailable"
    assert (await upload(client, ato)).status == 503

    restore_folder(storage_root)
    assert (await readiness(client))[0] == 200


async def test_a_storage_folder_on_another_volume_than_at_start_is_not_ready(
    client: Client, ato: NewKey
) -> None:
    """What an unmounted share looks like: the folder is there, on the parent filesystem."""
    storage = client.app[STORAGE]
    assert isinstance(storage, FolderStorage)
    assert storage.device is not None
    mounted = storage.device
    storage.device = mounted + 1  # as if the folder had been found on another device at start

    assert (await readiness(client))[0] == 503
    assert (await upload(client, ato)).status == 503

    storage.device = mounted
    assert (await readiness(client))[0] == 200


async def test_the_gateway_starts_while_the_database_is_down_and_says_it_is_not_ready(
    make_client: ClientFactory, ato: NewKey, storage_root: Path
) -> None:
    unreachable = f"postgresql://achievements:achievements@127.0.0.1:{closed_port()}/none"
    settings = gateway_settings_for(unreachable, storage_root)
    settings.common.postgres = PostgresSettings(
        database_url=SecretStr(unreachable), db_acquire_timeout_s=1
    )
    client = await make_client(create_app(settings))

    assert (await client.get("/healthz")).status == 200
    status, body = await readiness(client)
    assert status == 503
    assert body["checks"]["database"] == "unavailable"
    assert body["checks"]["storage"] == "ok"
    response = await upload(client, ato)
    assert response.status == 503
    assert (await response.json())["code"] == "SERVICE_UNAVAILABLE"
    assert stored_files(storage_root) == []


async def test_the_gateway_process_serves_without_kafka_and_stops_on_sigterm(
    database_url: str, ato: NewKey, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """`python -m services.upload_gateway` does not wait for Kafka before it listens."""
    port = closed_port()
    env = service_env(
        {
            "DEPLOYMENT_MODE": "local",
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed_port()}",
            "STORAGE_ROOT": str(tmp_path / "storage"),
            "GATEWAY_PORT": str(port),
        }
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.upload_gateway",
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(30):
                while True:
                    try:
                        async with session.get(f"{url}/readyz") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        pass
                    await asyncio.sleep(0.1)
            async with session.post(
                f"{url}/v1/uploads",
                data=VALID_CSV,
                params={"terms_accepted": "true"},
                headers={**bearer(ato), "Content-Type": "text/csv"},
            ) as response:
                assert response.status == 202, await response.text()
        assert await unsent_events(pool) == ["upload.received"]
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
