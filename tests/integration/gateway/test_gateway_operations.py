"""Operations and documents: health, readiness, metrics, JSON errors, the scheme for users."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import asyncpg
from aiohttp import web
from gateway_helpers import (
    VALID_CSV,
    Client,
    ClientFactory,
    bearer,
    drop_database,
    gateway_settings_for,
)
from pydantic import SecretStr

from services.core.settings import KafkaSettings, PostgresSettings
from services.upload_gateway.app import create_app
from services.upload_gateway.appkeys import POOL, PUBLIC_ROUTES
from services.upload_gateway.keys import NewKey


async def test_healthz_answers_while_the_process_runs(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert (await response.json())["status"] == "ok"


async def test_readyz_checks_the_database_and_reports_kafka_disabled_without_the_relay(
    client: Client,
) -> None:
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "storage": "ok", "kafka": "disabled"},
    }


async def test_readyz_reports_kafka_once_the_relay_reaches_it(
    make_client: ClientFactory, kafka_settings: KafkaSettings
) -> None:
    """Kafka is reported, not required (test_gateway_readiness.py: ready without it)."""
    client = await make_client(run_outbox_relay=True, kafka=kafka_settings)
    # The relay connects in the background; its last check shows within a few seconds.
    for _ in range(100):
        checks = (await (await client.get("/readyz")).json())["checks"]
        if checks["kafka"] == "ok":
            break
        await asyncio.sleep(0.2)
    assert checks == {"database": "ok", "storage": "ok", "kafka": "ok"}


async def test_a_request_that_cannot_get_a_connection_in_time_is_503_json(
    make_client: ClientFactory, ato: NewKey, database_url: str, storage_root: Path
) -> None:
    """The configured acquire timeout bounds the wait for a busy pool; the timeout is one of the
    transient errors, answered 503 like a database that went away."""
    settings = gateway_settings_for(database_url, storage_root)
    settings.common.postgres = PostgresSettings(
        database_url=SecretStr(database_url),
        db_pool_min_size=1,
        db_pool_max_size=1,
        db_acquire_timeout_s=0.2,
    )
    client = await make_client(create_app(settings))
    async with client.app[POOL].acquire():  # the pool's only connection, busy
        response = await client.get("/v1/uploads", headers=bearer(ato))
    assert response.status == 503
    assert (await response.json())["code"] == "SERVICE_UNAVAILABLE"
    assert (await client.get("/v1/uploads", headers=bearer(ato))).status == 200


async def test_readyz_is_503_naming_the_setting_when_the_database_is_gone(
    client: Client, database_url: str
) -> None:
    assert (await client.get("/readyz")).status == 200
    await drop_database(database_url)
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    # A database the URL names but the server does not have never comes back by waiting: it is
    # the setting to correct, not an outage.
    assert body["checks"]["database"] == "misconfigured"
    assert "DATABASE_URL" in body["misconfigured"]["database"]


async def test_metrics_count_requests_by_route_template_and_upload_bytes(
    client: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    await client.post(
        "/v1/uploads",
        data=VALID_CSV,
        params={"terms_accepted": "true"},
        headers={**bearer(ato), "Content-Type": "text/csv"},
    )
    await client.get("/v1/uploads/00000000-0000-4000-8000-000000000000", headers=bearer(ato))
    await client.get("/no/such/path")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    assert 'gateway_requests_total{method="POST",route="/v1/uploads",status="202"} 1.0' in text
    assert (
        'gateway_requests_total{method="GET",route="/v1/uploads/{upload_id}",status="404"} 1.0'
        in text
    )
    assert 'route="unmatched"' in text
    assert "00000000-0000-4000" not in text  # ids never become labels
    assert f"gateway_upload_bytes_total {float(len(VALID_CSV))}" in text
    assert 'gateway_uploads_total{outcome="created"} 1.0' in text
    # The upload.received event has not been relayed (the relay is off in this test).
    assert "gateway_outbox_backlog_events 1.0" in text


async def test_each_app_has_its_own_metrics_registry(make_client: ClientFactory) -> None:
    first = await make_client()
    second = await make_client()
    await first.get("/healthz")
    text = await (await second.get("/metrics")).text()
    assert 'route="/healthz"' not in text


async def test_unknown_routes_and_wrong_methods_are_json(client: Client) -> None:
    missing = await client.get("/v1/nothing-here")
    assert missing.status == 404
    assert missing.content_type == "application/json"
    assert (await missing.json())["code"] == "NOT_FOUND"
    wrong = await client.put("/v1/uploads")
    assert wrong.status == 405
    assert (await wrong.json())["code"] == "METHOD_NOT_ALLOWED"
    assert "POST" in wrong.headers["Allow"]


async def test_an_unexpected_error_is_a_json_500_without_details(
    make_client: ClientFactory, database_url: str, tmp_path: Path
) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("secret detail: ULN 1000000043")

    app = create_app(gateway_settings_for(database_url, tmp_path))
    app.router.add_get("/boom", broken, name="boom")
    app[PUBLIC_ROUTES] = app[PUBLIC_ROUTES] | {"boom"}
    client = await make_client(app)
    response = await client.get("/boom")
    assert response.status == 500
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["code"] == "INTERNAL_ERROR"
    assert "secret" not in body["message"]
    assert "1000000043" not in await response.text()


async def test_the_template_downloads_as_an_attachment_with_the_scheme_headers(
    client: Client,
) -> None:
    response = await client.get("/v1/template.csv")
    assert response.status == 200
    assert response.content_type == "text/csv"
    assert (
        response.headers["Content-Disposition"]
        == 'attachment; filename="bulk-achievements-template.csv"'
    )
    [header] = list(csv.reader(io.StringIO(await response.text())))
    assert header[:3] == ["ProviderReference", "CourseCode", "AchievementDate"]
    assert len(header) == 11


async def test_the_scheme_and_the_events_schema_are_json(client: Client) -> None:
    scheme = await client.get("/v1/scheme")
    assert scheme.status == 200
    assert isinstance(await scheme.json(), dict)
    events = await client.get("/v1/events/schema")
    assert events.status == 200
    assert "upload.received" in await events.text()


async def test_the_course_list_is_the_live_catalogue_with_titles_grants_and_open(
    client: Client, pool: asyncpg.Pool
) -> None:
    version = await pool.fetchval("SELECT version FROM reference_versions WHERE id = 1")
    catalogue = await pool.fetch(
        "SELECT code, title, grant_pence FROM courses WHERE version = $1 ORDER BY code", version
    )

    response = await client.get("/v1/courses")

    assert response.status == 200
    body = await response.json()
    assert body["reference_version"] == version
    assert [(c["code"], c["title"], c["grant_amount_pence"]) for c in body["courses"]] == [
        (row["code"], row["title"], row["grant_pence"]) for row in catalogue
    ]
    working_at_height = next(c for c in body["courses"] if c["code"] == "SD-WAH-101")
    assert working_at_height == {
        "code": "SD-WAH-101",
        "title": "Working at height",
        "grant_amount_pence": 6000,
        "open": True,
        "valid_from": "2018-04-01",
        "valid_to": None,
    }
