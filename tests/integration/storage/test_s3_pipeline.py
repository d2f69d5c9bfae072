"""The pipeline on the S3 backend, against the project's own S3 server and the local stack's
PostgreSQL: the gateway streams uploads into the bucket, validators read them by byte range,
retention deletes the objects, and the faults give a clear answer and lose nothing.

Needs the stack (`make infra`) besides the S3 server these tests start themselves."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from services.core.events import Topics
from services.core.learner_requests import IdentifierKind, Learner, erase
from services.core.reference_store import ReferenceCache
from services.core.retention import purge
from services.core.settings import (
    CommonSettings,
    DeploymentMode,
    PostgresSettings,
    RetentionSettings,
    StorageSettings,
)
from services.core.storage import Storage, StorageUnavailable, open_storage, upload_key
from services.core.storage.s3 import S3Storage
from services.upload_gateway.app import create_app
from services.upload_gateway.keys import NewKey, create_ato
from services.upload_gateway.settings import GatewaySettings
from services.validator.chunk_worker import ChunkWorker
from services.validator.planner import plan_upload
from services.validator.settings import ValidatorSettings
from tests.gateway_server import start_gateway
from tests.s3_server import S3Server, closed_endpoint, s3_settings_for

pytestmark = [
    pytest.mark.tier2,
    pytest.mark.stack,
    pytest.mark.slow,
    # The first test starts the S3 server, and builds it when it is missing (about 7 minutes
    # on 2 cores; `make test-tier2` builds it before pytest starts).
    pytest.mark.timeout(1800),
]

HEADER = (
    b"ProviderReference,CourseCode,AchievementDate,LearnerForename,LearnerSurname,DateOfBirth,"
    b"ULN,NINumber,CITBIndividualId,EmployerLevyNumber,Notes\r\n"
)
# Two days before today: valid, and no ACHDATE_03 warning (more than 10 days before).
ACHIEVED = (datetime.now(UTC).date() - timedelta(days=2)).strftime("%d/%m/%Y").encode()
# A course in the catalogue, a registered levy number: `passed`, as a spreadsheet writes it.
VALID_CSV = (
    HEADER
    + b"R1,SD-WAH-101,"
    + ACHIEVED
    + ',Zoë,"O\'Brien, Siân",01/01/1990,1000000043,,,79049946,"PO 4471, cohort B"\r\n'.encode()
)
TOPICS = Topics("unused.")

Client = TestClient[web.Request, web.Application]


def common_for(database_url: str, storage: StorageSettings) -> CommonSettings:
    postgres = PostgresSettings(
        database_url=SecretStr(database_url), deployment_mode=DeploymentMode.LOCAL
    )
    return CommonSettings(postgres=postgres, storage=storage)


@pytest.fixture
async def make_gateway(database_url: str) -> AsyncIterator[Callable[..., Any]]:
    clients: list[Client] = []

    async def make(storage: StorageSettings) -> Client:
        settings = GatewaySettings(run_outbox_relay=False, common=common_for(database_url, storage))
        client = await start_gateway(create_app(settings))
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def ato(pool: asyncpg.Pool) -> NewKey:
    async with pool.acquire() as connection:
        return await create_ato(connection, "Training Co")


async def post(
    client: Client, ato: NewKey, body: bytes, idempotency_key: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {"Authorization": f"Bearer {ato.api_key}", "Content-Type": "text/csv"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    response = await client.post(
        "/v1/uploads", data=body, params={"terms_accepted": "true"}, headers=headers
    )
    return response.status, await response.json(), dict(response.headers)


def validator_settings(database_url: str, storage: StorageSettings) -> ValidatorSettings:
    # No wait between tries: the test drives the worker step by step.
    return ValidatorSettings(common=common_for(database_url, storage), retry_delay_s=0.0)


async def planned_upload(
    gateway: Client,
    ato: NewKey,
    pool: asyncpg.Pool,
    settings: ValidatorSettings,
    storage: Storage,
    body: bytes = VALID_CSV,
) -> uuid.UUID:
    """An upload sent through the gateway and planned into chunks for the validators."""
    upload_id = uuid.UUID((await post(gateway, ato, body))[1]["upload_id"])
    await plan_upload(pool, storage, settings, TOPICS, upload_id)
    return upload_id


async def validate_planned(pool: asyncpg.Pool, settings: ValidatorSettings) -> None:
    """Every planned chunk validated by one worker, until none is left."""
    await ChunkWorker(settings, pool, TOPICS, ReferenceCache(pool)).run_until_idle()


async def upload_row(pool: asyncpg.Pool, upload_id: object) -> asyncpg.Record:
    async with pool.acquire() as connection:
        row = await connection.fetchrow("SELECT * FROM uploads WHERE upload_id = $1", upload_id)
    assert row is not None
    return row


def bucket_keys(settings: StorageSettings) -> list[str]:
    storage = open_storage(settings)
    assert isinstance(storage, S3Storage)
    return sorted(storage.keys())


async def test_an_upload_goes_into_the_bucket_and_is_validated_from_it(
    make_gateway: Callable[..., Any],
    ato: NewKey,
    pool: asyncpg.Pool,
    database_url: str,
    s3_settings: StorageSettings,
) -> None:
    gateway = await make_gateway(s3_settings)
    status, body, _ = await post(gateway, ato, VALID_CSV)
    assert status == 202
    upload_id = uuid.UUID(body["upload_id"])
    assert bucket_keys(s3_settings) == [f"uploads/{upload_id}.csv"]

    settings = validator_settings(database_url, s3_settings)
    await plan_upload(pool, open_storage(s3_settings), settings, TOPICS, upload_id)
    await validate_planned(pool, settings)

    row = await upload_row(pool, upload_id)
    assert (row["status"], row["size_bytes"]) == ("passed", len(VALID_CSV))


async def test_storage_down_while_receiving_is_503_then_the_same_key_succeeds_once(
    make_gateway: Callable[..., Any],
    ato: NewKey,
    pool: asyncpg.Pool,
    s3_server: S3Server,
    s3_settings: StorageSettings,
    s3_prefix: str,
) -> None:
    unreachable = s3_settings_for(s3_server, s3_prefix, s3_endpoint=closed_endpoint())
    down = await make_gateway(unreachable)

    status, body, headers = await post(down, ato, VALID_CSV, idempotency_key="retry-1")

    assert status == 503
    assert body["code"] == "STORAGE_UNAVAILABLE"
    assert headers["Retry-After"] == "5"
    async with pool.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM uploads") == 0
    readiness = await down.get("/readyz")
    assert readiness.status == 503
    assert (await readiness.json())["checks"]["storage"] == "unavailable"

    up = await make_gateway(s3_settings)
    first = await post(up, ato, VALID_CSV, idempotency_key="retry-1")
    again = await post(up, ato, VALID_CSV, idempotency_key="retry-1")

    assert (first[0], again[0]) == (202, 200)
    assert first[1]["upload_id"] == again[1]["upload_id"]
    async with pool.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM uploads") == 1
    assert bucket_keys(s3_settings) == [f"uploads/{first[1]['upload_id']}.csv"]
    assert (await up.get("/readyz")).status == 200


async def test_a_chunk_read_while_storage_is_down_is_retried_and_never_counted(
    make_gateway: Callable[..., Any],
    ato: NewKey,
    pool: asyncpg.Pool,
    database_url: str,
    s3_server: S3Server,
    s3_settings: StorageSettings,
    s3_prefix: str,
) -> None:
    gateway = await make_gateway(s3_settings)
    settings = validator_settings(database_url, s3_settings)
    upload_id = await planned_upload(gateway, ato, pool, settings, open_storage(s3_settings))
    worker = ChunkWorker(settings, pool, TOPICS, ReferenceCache(pool))
    worker.storage = open_storage(
        s3_settings_for(s3_server, s3_prefix, s3_endpoint=closed_endpoint())
    )

    # More outages in a row than the attempts that would end the upload `errored`.
    for _ in range(settings.chunk_max_attempts + 2):
        with pytest.raises(StorageUnavailable):
            await worker.work_once()
    async with pool.acquire() as connection:
        attempts = await connection.fetch(
            "SELECT attempts FROM validation_chunks WHERE upload_id = $1", upload_id
        )
    assert [row["attempts"] for row in attempts] == [0]
    assert (await upload_row(pool, upload_id))["status"] == "validating"

    worker.storage = open_storage(s3_settings)  # the storage is back
    await worker.run_until_idle()
    assert (await upload_row(pool, upload_id))["status"] == "passed"


async def test_a_missing_object_ends_the_upload_errored(
    make_gateway: Callable[..., Any],
    ato: NewKey,
    pool: asyncpg.Pool,
    database_url: str,
    s3_settings: StorageSettings,
) -> None:
    gateway = await make_gateway(s3_settings)
    settings = validator_settings(database_url, s3_settings)
    storage = open_storage(s3_settings)
    upload_id = await planned_upload(gateway, ato, pool, settings, storage)
    assert await storage.delete(upload_key(upload_id)) is True

    await validate_planned(pool, settings)

    assert (await upload_row(pool, upload_id))["status"] == "errored"


async def test_a_purge_leaves_nothing_of_the_purged_uploads_in_the_bucket(
    make_gateway: Callable[..., Any],
    ato: NewKey,
    pool: asyncpg.Pool,
    database_url: str,
    s3_settings: StorageSettings,
) -> None:
    gateway = await make_gateway(s3_settings)
    settings = validator_settings(database_url, s3_settings)
    storage = open_storage(s3_settings)
    upload_ids = []
    refused = HEADER + b"R2,NOPE," + ACHIEVED + b",Bo,Li,01/01/1990,,,,,\r\n"
    for body in (VALID_CSV, refused):
        upload_ids.append(await planned_upload(gateway, ato, pool, settings, storage, body))
    await validate_planned(pool, settings)
    assert len(bucket_keys(s3_settings)) == 2
    decided = [await upload_row(pool, upload_id) for upload_id in upload_ids]
    later = max(row["validated_at"] for row in decided) + timedelta(days=31)

    report = await purge(pool, storage, RetentionSettings(days=30), later)

    assert report.uploads_purged == 2
    assert report.files_deleted == 2
    assert bucket_keys(s3_settings) == []


async def test_erasing_a_learner_deletes_their_uploads_objects(
    make_gateway: Callable[..., Any],
    ato: NewKey,
    pool: asyncpg.Pool,
    database_url: str,
    s3_settings: StorageSettings,
) -> None:
    gateway = await make_gateway(s3_settings)
    settings = validator_settings(database_url, s3_settings)
    storage = open_storage(s3_settings)
    upload_id = await planned_upload(gateway, ato, pool, settings, storage)
    await validate_planned(pool, settings)
    assert bucket_keys(s3_settings) == [f"uploads/{upload_id}.csv"]

    learner = Learner.of(ato.ato_id, IdentifierKind.ULN, "1000000043")
    async with pool.acquire() as connection:
        result = await erase(
            connection, storage, TOPICS, RetentionSettings(days=30), learner, datetime.now(UTC)
        )

    assert result["files_deleted"] == 1
    assert bucket_keys(s3_settings) == []
