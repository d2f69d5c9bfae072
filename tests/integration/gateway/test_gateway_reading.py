"""Reading uploads back: the list, one upload, the error report (JSON/CSV), the achievements."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from gateway_helpers import Client, bearer, insert_achievement, insert_upload

from services.upload_gateway.keys import NewKey


async def add_issues(
    pool: asyncpg.Pool, upload_id: uuid.UUID, issues: list[tuple[object, ...]]
) -> None:
    async with pool.acquire() as connection:
        await connection.executemany(
            "INSERT INTO row_issues (upload_id, row_number, position, column_name, code,"
            " severity, message, masked_value) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            [(upload_id, *issue) for issue in issues],
        )


async def test_an_upload_reads_back_with_counts_times_and_the_valid_message(
    client: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    validated_at = datetime.now(UTC)
    upload_id = await insert_upload(
        pool,
        ato.ato_id,
        status="passed",
        encoding="utf-8",
        rows_total=3,
        rows_valid=3,
        rows_processed=3,
        counts_by_code={"LEVY_03": 1},
        validation_started_at=validated_at - timedelta(seconds=2),
        validated_at=validated_at,
    )
    response = await client.get(f"/v1/uploads/{upload_id}", headers=bearer(ato))
    assert response.status == 200
    body = await response.json()
    assert body["upload_id"] == str(upload_id)
    assert body["status"] == "passed"
    assert body["message"] == "The data is valid"
    assert body["encoding"] == "utf-8"
    assert (body["rows_total"], body["rows_valid"], body["rows_invalid"]) == (3, 3, 0)
    assert body["rows_processed"] == 3
    assert body["counts_by_code"] == {"LEVY_03": 1}
    assert body["file_errors"] == []
    assert datetime.fromisoformat(body["validated_at"]) == validated_at
    assert body["withdrawn_at"] is None
    for field in ("received_at", "terms_accepted_at", "validation_started_at", "sha256"):
        assert body[field]


async def test_a_rejected_upload_lists_its_file_error(
    client: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    upload_id = await insert_upload(
        pool,
        ato.ato_id,
        status="rejected",
        file_error_code="FILE_04",
        file_error_message="The header row is missing CourseCode.",
    )
    body = await (await client.get(f"/v1/uploads/{upload_id}", headers=bearer(ato))).json()
    assert body["file_errors"] == [
        {"code": "FILE_04", "message": "The header row is missing CourseCode."}
    ]
    assert body["message"] != "The data is valid"


async def test_uploads_are_listed_newest_first_in_pages_with_a_cursor(
    client: Client, ato: NewKey, other_ato: NewKey, pool: asyncpg.Pool
) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    ids = [
        await insert_upload(pool, ato.ato_id, received_at=start + timedelta(minutes=i))
        for i in range(5)
    ]
    await insert_upload(pool, other_ato.ato_id)  # never listed for `ato`
    newest_first = [str(i) for i in reversed(ids)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = await (await client.get("/v1/uploads", params=params, headers=bearer(ato))).json()
        seen.extend(item["upload_id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == newest_first
    by_offset = await client.get(
        "/v1/uploads", params={"limit": "2", "offset": "2"}, headers=bearer(ato)
    )
    assert [u["upload_id"] for u in (await by_offset.json())["items"]] == newest_first[2:4]


async def test_uploads_can_be_filtered_by_status(
    client: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    failed = await insert_upload(pool, ato.ato_id, status="failed")
    await insert_upload(pool, ato.ato_id, status="passed")
    response = await client.get("/v1/uploads", params={"status": "failed"}, headers=bearer(ato))
    assert [u["upload_id"] for u in (await response.json())["items"]] == [str(failed)]


async def test_list_parameters_out_of_range_are_a_400(client: Client, ato: NewKey) -> None:
    for params in ({"limit": "201"}, {"limit": "0"}, {"status": "done"}, {"cursor": "%%%"}):
        response = await client.get("/v1/uploads", params=params, headers=bearer(ato))
        assert response.status == 400, params
        assert (await response.json())["code"] in ("INVALID_PARAMETER", "INVALID_CURSOR")


async def test_the_error_report_is_json_in_row_order_with_masked_values(
    client: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    upload_id = await insert_upload(
        pool, ato.ato_id, status="failed", counts_by_code={"ULN_03": 1, "LEVY_03": 1, "ID_01": 1}
    )
    await add_issues(
        pool,
        upload_id,
        [
            (4, 0, "EmployerLevyNumber", "LEVY_03", "warning", "No levy number.", None),
            (3, 1, None, "ID_01", "error", "No identifier.", None),
            (3, 0, "ULN", "ULN_03", "error", "Check digit wrong.", "10*****43"),
        ],
    )
    response = await client.get(f"/v1/uploads/{upload_id}/errors", headers=bearer(ato))
    assert response.status == 200
    body = await response.json()
    assert [(i["row"], i["code"]) for i in body["issues"]] == [
        (3, "ULN_03"),
        (3, "ID_01"),
        (4, "LEVY_03"),
    ]
    assert body["issues"][0] == {
        "row": 3,
        "column": "ULN",
        "code": "ULN_03",
        "severity": "error",
        "message": "Check digit wrong.",
        "value": "10*****43",
    }
    assert (body["issues_total"], body["issues_stored"], body["truncated"]) == (3, 3, False)
    assert body["issues_not_stored"] == 0


async def test_the_error_report_says_when_the_stored_issues_were_capped(
    client: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    upload_id = await insert_upload(pool, ato.ato_id, status="failed", counts_by_code={"ULN_01": 5})
    await add_issues(pool, upload_id, [(2, 0, "ULN", "ULN_01", "error", "Not 10 digits.", "1*3")])
    body = await (await client.get(f"/v1/uploads/{upload_id}/errors", headers=bearer(ato))).json()
    assert (
        body["issues_total"],
        body["issues_stored"],
        body["issues_not_stored"],
        body["truncated"],
    ) == (5, 1, 4, True)
    response = await client.get(f"/v1/uploads/{upload_id}/errors?format=csv", headers=bearer(ato))
    assert response.headers["X-Issues-Truncated"] == "true"
    assert response.headers["X-Issues-Total"] == "5"
    assert response.headers["X-Issues-Not-Stored"] == "4"
    assert (await response.text()).splitlines() == [
        "row,column,code,severity,message,value",
        "2,ULN,ULN_01,error,Not 10 digits.,1*3",
        ',,,,"4 more problems are not listed in this report: it keeps the first ones, by row.'
        ' Fix these, then upload the file again to see the rest.",',
    ]


async def test_the_error_report_as_csv_neutralises_formulas(
    client: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    upload_id = await insert_upload(pool, ato.ato_id, status="failed", counts_by_code={"X": 4})
    await add_issues(
        pool,
        upload_id,
        [
            (2, 0, "ProviderReference", "REF_01", "error", "Too long.", "=HYPERLINK(1)"),
            (3, 0, "Notes", "NOTES_02", "warning", "Starts like a formula.", "+cmd"),
            (4, 0, "CourseCode", "COURSE_02", "error", "Bad format.", "@SUM(A1)"),
            (5, 0, "CourseCode", "COURSE_02", "error", "-2+3", "\tTAB"),
        ],
    )
    for kwargs in ({"headers": {"Accept": "text/csv"}}, {"params": {"format": "csv"}}):
        headers = {**bearer(ato), **kwargs.get("headers", {})}
        response = await client.get(
            f"/v1/uploads/{upload_id}/errors", headers=headers, params=kwargs.get("params")
        )
        assert response.status == 200
        assert response.content_type == "text/csv"
        assert "attachment" in response.headers["Content-Disposition"]
        rows = list(csv.reader(io.StringIO(await response.text())))
        assert rows[0] == ["row", "column", "code", "severity", "message", "value"]
        assert [r[5] for r in rows[1:]] == ["'=HYPERLINK(1)", "'+cmd", "'@SUM(A1)", "'\tTAB"]
        assert rows[4][4] == "'-2+3"
        assert rows[1][:4] == ["2", "ProviderReference", "REF_01", "error"]


async def test_an_empty_error_report_as_csv_is_just_the_header(
    client: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    upload_id = await insert_upload(pool, ato.ato_id)
    response = await client.get(f"/v1/uploads/{upload_id}/errors?format=csv", headers=bearer(ato))
    assert await response.text() == "row,column,code,severity,message,value\r\n"


async def test_achievements_list_grant_state_without_learner_data(
    client: Client, ato: NewKey, pool: asyncpg.Pool
) -> None:
    upload_id = await insert_upload(pool, ato.ato_id, status="passed_with_warnings")
    held = await insert_achievement(pool, upload_id, ato.ato_id, row_number=2)
    await insert_achievement(
        pool, upload_id, ato.ato_id, row_number=3, grant_state="not_eligible", grant_eligible=False
    )
    await insert_achievement(pool, upload_id, ato.ato_id, row_number=4)
    response = await client.get(
        f"/v1/uploads/{upload_id}/achievements", params={"limit": "2"}, headers=bearer(ato)
    )
    assert response.status == 200
    body = await response.json()
    assert (body["total"], body["next_offset"]) == (3, 2)
    first = body["items"][0]
    assert first["achievement_id"] == str(held)
    assert first["row_number"] == 2
    assert first["grant_state"] == "held"
    assert first["grant_eligible"] is True
    assert datetime.fromisoformat(first["release_at"]) > datetime.now(UTC)
    assert body["items"][1]["grant_state"] == "not_eligible"
    text = await response.text()
    for personal in ("Ann", "Smith", "1990", "1000000043"):
        assert personal not in text
    rest = await client.get(
        f"/v1/uploads/{upload_id}/achievements",
        params={"limit": "2", "offset": "2"},
        headers=bearer(ato),
    )
    rest_body = await rest.json()
    assert [i["row_number"] for i in rest_body["items"]] == [4]
    assert rest_body["next_offset"] is None
