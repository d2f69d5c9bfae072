"""The upload's outcome: which file-level code wins, the status, and the order of issues."""

from __future__ import annotations

from typing import Final

from services.core.scheme.codes import (
    FILE_02_NO_DATA,
    ROW_LEVEL_CODES,
    Code,
    FileError,
    Policy,
    UploadStatus,
    too_many_rows_message,
)
from services.core.scheme.columns import COLUMN_POSITION, COLUMNS
from services.core.scheme.validation import Issue

DEFAULT_ROW_LIMIT: Final = 1_000_000


def file_error_after_reading(
    *,
    unparseable: FileError | None,
    header: FileError | None,
    rows_total: int,
    row_limit: int = DEFAULT_ROW_LIMIT,
) -> FileError | None:
    """Section 8's precedence for the codes known only once the records have been read.

    (Size, workbook and NUL bytes, decoding and emptiness come first, from `FileInspector`.)
    `rows_total` counts non-blank data rows; it may stop counting just past the limit.
    """
    if unparseable is not None:
        return unparseable  # FILE_01
    if header is not None:
        return header  # FILE_04
    if rows_total == 0:
        return FileError(Code.FILE_02, FILE_02_NO_DATA)
    if rows_total > row_limit:
        return FileError(Code.FILE_05, too_many_rows_message(row_limit))
    return None


def decide_status(
    policy: Policy,
    rows_total: int,
    rows_invalid: int,
    rows_warned: int,
    file_error_code: Code | None,
) -> UploadStatus:
    """Section 6, with section 8's reading that `valid_rows` with no valid row is `failed`."""
    if file_error_code is not None:
        return UploadStatus.REJECTED
    if rows_total <= 0:
        raise ValueError("a file with no data row is rejected (FILE_02), not given a status")
    if not 0 <= rows_invalid <= rows_total or not 0 <= rows_warned <= rows_total - rows_invalid:
        raise ValueError("counts out of range")
    if rows_invalid == 0:
        return UploadStatus.PASSED_WITH_WARNINGS if rows_warned else UploadStatus.PASSED
    if policy is Policy.VALID_ROWS and rows_invalid < rows_total:
        return UploadStatus.PARTIALLY_ACCEPTED
    return UploadStatus.FAILED


_ROW_LEVEL_POSITION: Final = {
    code: len(COLUMNS) + order for order, code in enumerate(ROW_LEVEL_CODES)
}


def issue_position(issue: Issue) -> int:
    """Order within a row: template column order, then the row-level codes in scheme order."""
    if issue.column is not None:
        return COLUMN_POSITION[issue.column]
    return _ROW_LEVEL_POSITION[issue.code]


def issue_sort_key(issue: Issue) -> tuple[int, int]:
    return issue.row, issue_position(issue)


def sort_issues(issues: list[Issue]) -> None:
    """In place; stable, and close to free when already in order (as the validator emits)."""
    issues.sort(key=issue_sort_key)


def accepts_rows(status: UploadStatus) -> bool:
    """Whether the valid rows of an upload with this status are accepted."""
    return status in (
        UploadStatus.PASSED,
        UploadStatus.PASSED_WITH_WARNINGS,
        UploadStatus.PARTIALLY_ACCEPTED,
    )
