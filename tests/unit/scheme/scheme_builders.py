"""Builders for the scheme's unit tests: a valid row to vary, files to write, results to read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import Path

from services.core.scheme.columns import COLUMNS, HeaderMap, match_header
from services.core.scheme.reference import bundled_reference
from services.core.scheme.validation import RowResult, RowValidator

UPLOAD_DATE = date(2026, 11, 20)
HEADERS = [spec.header for spec in COLUMNS]
HEADER_LINE = ",".join(HEADERS)

# Valid ULNs (check digit right), distinct, for rows that must not be duplicates.
VALID_ULNS = (
    "1000000043",
    "1234567899",
    "5555555554",
    "1111111110",
    "1234567805",
    "1234567813",
    "1234567821",
    "1234567848",
)

# Every cell valid, no warning: eight days before the upload date, a registered,
# grant-eligible employer.
VALID: Mapping[str, str] = {
    "ProviderReference": "REF-0001",
    "CourseCode": "SD-WAH-101",
    "AchievementDate": "12/11/2026",
    "LearnerForename": "Amelia",
    "LearnerSurname": "Hartley",
    "DateOfBirth": "14/03/1990",
    "ULN": "1000000043",
    "NINumber": "",
    "CITBIndividualId": "",
    "EmployerLevyNumber": "79049946",
    "Notes": "",
}


def cells(**changes: str) -> list[str]:
    """The valid row's cells in template order, with some cells changed."""
    unknown = set(changes) - set(VALID)
    if unknown:
        raise KeyError(f"not template columns: {unknown}")
    return [changes.get(header, VALID[header]) for header in HEADERS]


def template_header_map() -> HeaderMap:
    header = match_header(HEADERS)
    assert isinstance(header, HeaderMap)
    return header


def validator(today: date = UPLOAD_DATE) -> RowValidator:
    return RowValidator(template_header_map(), today, bundled_reference())


def validate(row_number: int = 2, *, today: date = UPLOAD_DATE, **changes: str) -> RowResult:
    result = validator(today).validate((row_number, cells(**changes)))
    assert result is not None, "the row was blank"
    return result


def codes(result: RowResult) -> list[str]:
    return [issue.code.value for issue in result.issues]


def csv_line(values: Iterable[str], delimiter: str = ",") -> str:
    """One record, quoting a value only when it needs it (as a spreadsheet does)."""
    out = []
    for value in values:
        if any(char in value for char in (delimiter, '"', "\r", "\n")):
            value = '"' + value.replace('"', '""') + '"'
        out.append(value)
    return delimiter.join(out)


def csv_text(rows: Iterable[Iterable[str]], header: Iterable[str] = HEADERS) -> str:
    return "".join(csv_line(row) + "\r\n" for row in [list(header), *rows])


def write(folder: Path, name: str, content: str | bytes, encoding: str = "utf-8") -> Path:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
    return path
