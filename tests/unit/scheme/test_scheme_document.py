"""The published scheme and template come from the definitions the validator runs."""

from __future__ import annotations

import json

from scheme_builders import HEADER_LINE

from services.core.scheme.codes import MESSAGES, SEVERITY, Code, UploadStatus
from services.core.scheme.columns import COLUMNS
from services.core.scheme.scheme_document import scheme_document, template_csv


def test_template_is_the_header_row_in_template_order_with_crlf() -> None:
    assert template_csv() == HEADER_LINE + "\r\n"


def test_the_document_is_json_serialisable() -> None:
    assert json.loads(json.dumps(scheme_document()))["version"] == 1


def test_columns_carry_header_letter_required_format_and_rules_in_order() -> None:
    columns = scheme_document()["columns"]
    assert [c["header"] for c in columns] == [spec.header for spec in COLUMNS]
    assert [c["letter"] for c in columns] == list("ABCDEFGHIJK")
    course = columns[1]
    assert course["required"] == "yes"
    assert [rule["code"] for rule in course["rules"]] == [
        "COURSE_01",
        "COURSE_02",
        "COURSE_03",
        "COURSE_04",
    ]
    assert columns[6]["required"] == "one of G, H, I"


def test_every_code_appears_once_with_the_validators_severity_and_message() -> None:
    document = scheme_document()
    rules = [rule for column in document["columns"] for rule in column["rules"]]
    rules += document["row_rules"]
    assert sorted(rule["code"] for rule in rules) == sorted(
        code.value for code in Code if not code.startswith("FILE_")
    )
    for rule in rules:
        code = Code(rule["code"])
        assert rule["severity"] == SEVERITY[code].value
        assert rule["message"] == MESSAGES[code]
    assert [entry["code"] for entry in document["file_codes"]] == [
        f"FILE_0{n}" for n in range(1, 8)
    ]


def test_identifier_format_rules_publish_their_spreadsheet_damage_message() -> None:
    columns = {c["header"]: c for c in scheme_document()["columns"]}
    uln_01 = columns["ULN"]["rules"][0]
    assert "spreadsheet changed" in uln_01["spreadsheet_damage_message"]


def test_statuses_and_precedence_are_listed() -> None:
    document = scheme_document()
    assert [s["status"] for s in document["statuses"]] == [s.value for s in UploadStatus]
    assert document["file_precedence"][0] == "FILE_03 size"
    assert document["file"]["size_limit_bytes"] == 200 * 1024 * 1024
