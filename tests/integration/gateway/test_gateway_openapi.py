"""The OpenAPI document matches the running API: every route in it, and it holds under fuzzing."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import schemathesis
from gateway_helpers import Client, bearer, insert_achievement, insert_upload
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.upload_gateway.keys import NewKey

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@schemathesis.serializer("text/csv")
def _csv_body(ctx: Any, value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


async def test_every_registered_route_is_documented_and_every_documented_one_exists(
    client: Client,
) -> None:
    document = await (await client.get("/v1/openapi.json")).json()
    documented = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    registered = {
        (route.method, route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None
    }
    assert documented == registered
    assert ("POST", "/v1/uploads") in documented
    public = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if operation.get("security") == []
    }
    assert public == {
        ("GET", p)
        for p in (
            "/healthz",
            "/readyz",
            "/metrics",
            "/v1/openapi.json",
            "/v1/template.csv",
            "/v1/scheme",
            "/v1/courses",
            "/v1/events/schema",
        )
    }


async def test_the_api_holds_to_its_document_under_generated_requests(
    client: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    # Some real data, so that not every generated request is a 404.
    upload_id = await insert_upload(pool, ato.ato_id, status="failed")
    await insert_achievement(pool, upload_id, ato.ato_id)
    document = await (await client.get("/v1/openapi.json")).json()
    base_url = str(client.make_url(""))
    headers = bearer(ato)
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []

    def run_operation(operation: Any) -> None:
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)

        try:
            check()
        except Exception as error:
            failures.append(f"{operation.label}: {error}")

    def run_all() -> None:
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result  # every operation in the document loads
            run_operation(result.ok())

    # Schemathesis is synchronous: it runs in a thread while the server runs on this loop.
    await asyncio.to_thread(run_all)
    assert failures == []
