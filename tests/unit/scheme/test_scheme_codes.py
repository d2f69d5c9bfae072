"""Codes, severities, messages and the enumerations the API and events share."""

from __future__ import annotations

import re

from services.core.scheme.codes import (
    FILE_CODES,
    MESSAGES,
    ROW_LEVEL_CODES,
    SEVERITY,
    Code,
    Policy,
    Severity,
    UploadStatus,
    damaged,
    file_too_large_message,
    too_many_rows_message,
)

SCHEME_CODES = (
    [f"FILE_0{n}" for n in range(1, 8)]
    + ["REF_01", "COURSE_01", "COURSE_02", "COURSE_03", "COURSE_04"]
    + ["ACHDATE_01", "ACHDATE_02", "ACHDATE_03", "NAME_01", "NAME_02", "DOB_01", "DOB_02"]
    + ["ULN_01", "ULN_02", "ULN_03", "NINO_01", "NINO_02", "NINO_03", "CITBID_01"]
    + ["LEVY_01", "LEVY_02", "LEVY_03", "NOTES_01", "NOTES_02"]
    + ["ID_01", "ROW_01", "DUP_01", "DUP_02"]
)


def test_every_code_of_the_scheme_exists_with_its_own_name_as_value() -> None:
    assert sorted(code.value for code in Code) == sorted(SCHEME_CODES)
    assert all(code.name == code.value for code in Code)


def test_every_code_has_a_severity_and_a_sentence_as_message() -> None:
    for code in Code:
        assert SEVERITY[code] in (Severity.ERROR, Severity.WARNING)
        assert MESSAGES[code][0].isupper()
        assert MESSAGES[code].endswith(".")


def test_messages_hold_no_placeholders_and_only_the_rules_own_numbers() -> None:
    # Lengths, ages, counts and "Windows-1252" / "UTF-8": the rule, never a cell value.
    rule_numbers = {"1", "2", "5", "6", "7", "8", "9", "10", "12", "15", "20", "50", "100"}
    rule_numbers |= {"115", "255", "1252"}
    for code, message in MESSAGES.items():
        assert "{" not in message, code
        assert set(re.findall(r"[0-9]+", message)) <= rule_numbers, code


def test_file_and_row_level_code_groups() -> None:
    assert [code.value for code in FILE_CODES] == SCHEME_CODES[:7]
    assert [code.value for code in ROW_LEVEL_CODES] == ["ID_01", "ROW_01", "DUP_01", "DUP_02"]


def test_statuses_and_policies_are_the_contract_strings() -> None:
    assert [status.value for status in UploadStatus] == [
        "received",
        "validating",
        "rejected",
        "failed",
        "partially_accepted",
        "passed_with_warnings",
        "passed",
        "errored",
    ]
    assert [policy.value for policy in Policy] == ["all_or_nothing", "valid_rows"]


def test_limit_messages_name_the_configured_limits() -> None:
    assert file_too_large_message(200 * 1024 * 1024).endswith("200 MB.")
    assert "1,500 bytes" in file_too_large_message(1500)
    assert "1,000,000 data rows" in too_many_rows_message(1_000_000)


def test_the_damage_message_names_the_column_and_the_spreadsheet() -> None:
    message = damaged("ULN")
    assert "spreadsheet changed this ULN value" in message
    assert "scientific notation" in message
