"""The technical CSV scheme as JSON (`GET /v1/scheme`) and the blank template.

Built from the same definitions the validator runs (columns, codes, severities, messages), so
the published scheme cannot drift from the rules.
"""

from __future__ import annotations

from typing import Any, Final

from services.core.scheme.codes import (
    FILE_01_NUL,
    FILE_01_OPEN_QUOTE,
    FILE_01_TOO_LONG,
    FILE_01_WORKBOOK,
    FILE_02_EMPTY,
    FILE_02_NO_DATA,
    FILE_CODES,
    MESSAGES,
    ROW_LEVEL_CODES,
    SEVERITY,
    Code,
    Policy,
    UploadStatus,
    file_too_large_message,
    too_many_rows_message,
)
from services.core.scheme.columns import COLUMNS, template_header_line
from services.core.scheme.file_inspection import (
    DEFAULT_SIZE_LIMIT_BYTES,
    MAX_LINE_BYTES,
    Encoding,
)
from services.core.scheme.outcome import DEFAULT_ROW_LIMIT
from services.core.scheme.rules import DAMAGED_FINDINGS
from services.core.scheme.text import WHITE_SPACE

SCHEME_VERSION: Final = 1

_ROW_RULES: Final = {
    Code.ID_01: "None of ULN, NINumber, CITBIndividualId is given. Every identifier that is"
    " given is validated.",
    Code.ROW_01: "The record has a cell beyond the header's columns that is not empty after"
    " trimming.",
    Code.DUP_01: "An earlier row of the same file is the same achievement: same course code,"
    " same achievement date and at least one equal identifier (ULN, NI number, CITB ID, each"
    " normalised). Reported on the second and later rows, only where the course code, the date"
    " and that identifier are valid. The first occurrence counts even if it has other errors.",
    Code.DUP_02: "The same achievement was accepted from an earlier upload and not withdrawn."
    " Needs the database; the offline check skips it.",
}

_FILE_CONDITIONS: Final = {
    Code.FILE_01: "Not a CSV text file: contains NUL bytes, is a spreadsheet workbook, or cannot"
    " be parsed as CSV (a quoted field still open at the end of the file, or a line over"
    f" {MAX_LINE_BYTES:,} bytes).",
    Code.FILE_02: "Empty (no bytes, only a byte-order mark, or only white space), or a header"
    " with no non-blank data row.",
    Code.FILE_03: "Larger than the configured size limit.",
    Code.FILE_04: "Header problems: a template header missing, duplicated, an unknown header or"
    " an empty header cell before the last non-empty one. The message lists each.",
    Code.FILE_05: "More non-blank data rows than the configured limit.",
    Code.FILE_06: "Neither UTF-8 nor Windows-1252 can decode the bytes.",
    Code.FILE_07: "The same bytes (same SHA-256) were already accepted for this ATO and not"
    " withdrawn.",
}

_STATUSES: Final = {
    UploadStatus.RECEIVED: "Stored; waiting for validation.",
    UploadStatus.VALIDATING: "Being validated.",
    UploadStatus.REJECTED: "A file-level code applies; nothing accepted; every count is 0.",
    UploadStatus.FAILED: "Policy all_or_nothing and at least one row has an error, or policy"
    " valid_rows and no row is valid; nothing accepted.",
    UploadStatus.PARTIALLY_ACCEPTED: "Policy valid_rows and some rows have errors; the valid"
    " rows are accepted.",
    UploadStatus.PASSED_WITH_WARNINGS: "Every row valid, at least one warning.",
    UploadStatus.PASSED: "Every row valid, no warnings: the data is valid.",
    UploadStatus.ERRORED: "The pipeline could not finish validating the upload for a reason"
    " that is not in the file; nothing accepted; upload the file again (the message gives a"
    " reference for support). Never produced by the offline check.",
}

_FILE_01_MESSAGES: Final = (FILE_01_WORKBOOK, FILE_01_NUL, FILE_01_OPEN_QUOTE, FILE_01_TOO_LONG)


def _rule(code: Code) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "code": code.value,
        "severity": SEVERITY[code].value,
        "message": MESSAGES[code],
    }
    if (damaged := DAMAGED_FINDINGS.get(code)) is not None:
        # Used instead when a spreadsheet turned the value into scientific notation.
        rule["spreadsheet_damage_message"] = damaged.message
    return rule


def _file_messages(code: Code) -> list[str]:
    if code is Code.FILE_01:
        return list(_FILE_01_MESSAGES)
    if code is Code.FILE_02:
        return [FILE_02_EMPTY, FILE_02_NO_DATA]
    if code is Code.FILE_03:
        return [file_too_large_message(DEFAULT_SIZE_LIMIT_BYTES)]
    if code is Code.FILE_05:
        return [too_many_rows_message(DEFAULT_ROW_LIMIT)]
    return [MESSAGES[code]]


def scheme_document() -> dict[str, Any]:
    """The scheme, version 1, as a JSON-ready dict."""
    return {
        "name": "Bulk learner achievements: technical CSV scheme",
        "version": SCHEME_VERSION,
        "file": {
            "delimiter": ",",
            "alternative_delimiter": {
                "delimiter": ";",
                "when": "the header row split by ';' (trailing empty cells dropped) matches the"
                " template headers and split by ',' does not",
            },
            "quoting": 'RFC 4180: fields may be quoted with "; a quoted field may contain'
            ' commas, "" and line breaks; a " inside an unquoted field is an ordinary'
            " character",
            "encodings": [encoding.value for encoding in Encoding],
            "encoding_rule": "UTF-8 with or without a byte-order mark; a file that is not valid"
            " UTF-8 is read as Windows-1252 (Python's cp1252); the encoding used is reported",
            "header": {
                "template": template_header_line(),
                "matching": "ignoring case, surrounding and inner white space, '_' and '-';"
                " any order; every template header exactly once; no other header; fully"
                " empty header cells at the end are ignored",
            },
            "row_numbers": "as a spreadsheet shows them: the header is row 1; a quoted field"
            " spanning lines is one row; blank rows keep their numbers",
            "blank_rows": "a record whose cells are all empty after trimming is skipped and not"
            " counted",
            "short_rows": "padded with empty cells",
            "trimming": "every cell is trimmed of Unicode white space at both ends, then a"
            ' value wrapped as ="..." is unwrapped (any column)',
            "white_space": [f"U+{ord(char):04X}" for char in WHITE_SPACE],
            "dates": "d/m/yyyy or dd/mm/yyyy (day first) or exactly yyyy-mm-dd; the date must"
            " exist; no two-digit years, serial numbers or month names",
            "upload_date": "the day the gateway received the file, in UK time (Europe/London)",
            "size_limit_bytes": DEFAULT_SIZE_LIMIT_BYTES,
            "row_limit": DEFAULT_ROW_LIMIT,
            "max_line_bytes": MAX_LINE_BYTES,
        },
        "columns": [
            {
                "letter": spec.letter,
                "header": spec.header,
                "required": spec.required,
                "format": spec.format,
                "rules": [_rule(code) for code in spec.codes],
            }
            for spec in COLUMNS
        ],
        "row_rules": [{**_rule(code), "rule": _ROW_RULES[code]} for code in ROW_LEVEL_CODES],
        "file_codes": [
            {
                "code": code.value,
                "condition": _FILE_CONDITIONS[code],
                "messages": _file_messages(code),
            }
            for code in FILE_CODES
        ],
        "file_precedence": [
            "FILE_03 size",
            "FILE_01 NUL byte or workbook signature",
            "FILE_06 decoding",
            "FILE_02 empty",
            "FILE_01 unparseable",
            "FILE_04 header",
            "FILE_02 no non-blank data row",
            "FILE_05 row limit",
        ],
        "policies": [policy.value for policy in Policy],
        "statuses": [
            {"status": status.value, "meaning": meaning} for status, meaning in _STATUSES.items()
        ],
        "counts": {
            "rows_total": "non-blank data rows",
            "rows_invalid": "rows with at least one error",
            "rows_valid": "rows_total - rows_invalid",
            "rows_warned": "valid rows with at least one warning",
        },
        "severities": {
            "error": "the row is invalid",
            "warning": "reported; the row stays valid",
        },
    }


def template_csv() -> str:
    """The blank template: the header row in template order, CRLF line end."""
    return template_header_line() + "\r\n"
