"""The error-report CSV, the settings, and the OpenAPI document built from the route table."""

from __future__ import annotations

import csv
import io

import pytest

from services.upload_gateway.app import create_app
from services.upload_gateway.issues import Issue, csv_lines, neutralise
from services.upload_gateway.openapi import OPERATIONS, build_document
from services.upload_gateway.routes import ENDPOINTS
from services.upload_gateway.settings import GatewaySettings


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("=1+1", "'=1+1"),
        ("+44 20", "'+44 20"),
        ("-5", "'-5"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("AB****56C", "AB****56C"),
        ("a=b", "a=b"),
        ("", ""),
    ],
)
def test_cells_a_spreadsheet_would_run_are_neutralised(cell: str, shown: str) -> None:
    assert neutralise(cell) == shown


def test_csv_lines_quote_and_neutralise_every_text_cell() -> None:
    issues = [
        Issue(2, "Notes", "NOTES_02", "warning", 'Says "hi", then =1', "=cmd|' /C calc'!A0"),
        Issue(3, None, "ID_01", "error", "No identifier.", None),
    ]
    rows = list(csv.reader(io.StringIO(csv_lines(issues, header=True))))
    assert rows == [
        ["row", "column", "code", "severity", "message", "value"],
        ["2", "Notes", "NOTES_02", "warning", 'Says "hi", then =1', "'=cmd|' /C calc'!A0"],
        ["3", "", "ID_01", "error", "No identifier.", ""],
    ]


def test_settings_read_gateway_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_PORT", "9999")
    monkeypatch.setenv("GATEWAY_RUN_OUTBOX_RELAY", "false")
    monkeypatch.setenv("SCHEME_MAX_UPLOAD_BYTES", "1024")
    settings = GatewaySettings()
    assert (settings.port, settings.run_outbox_relay, settings.limits.max_upload_bytes) == (
        9999,
        False,
        1024,
    )
    assert settings.host == "127.0.0.1"
    assert "max_upload_bytes" not in GatewaySettings.model_fields


def test_every_route_has_an_operation_and_every_operation_a_route() -> None:
    assert {e.name for e in ENDPOINTS} == set(OPERATIONS)
    document = build_document(create_app(GatewaySettings()))
    operations = [op for path in document["paths"].values() for op in path.values()]
    assert sorted(op["operationId"] for op in operations) == sorted(OPERATIONS)
    assert document["paths"]["/v1/uploads/{upload_id}"]["get"]["parameters"][0]["name"] == (
        "upload_id"
    )
