"""The offline check (section 7): a whole file through the validator's code, no servers.

It is also the reference for the order of the file-level checks, which the pipeline follows
with its own storage, batching and database-side duplicate rules.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from services.core.scheme.codes import Code, FileError, Policy, UploadStatus
from services.core.scheme.file_inspection import (
    DEFAULT_SIZE_LIMIT_BYTES,
    Encoding,
    inspect_stream,
    size_error,
)
from services.core.scheme.outcome import (
    DEFAULT_ROW_LIMIT,
    decide_status,
    file_error_after_reading,
    sort_issues,
)
from services.core.scheme.records import RecordReader, detect_layout, path_opener
from services.core.scheme.reference import ReferenceData, bundled_reference
from services.core.scheme.validation import InFileDuplicates, Issue, RowValidator


class FileErrorReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: Code
    message: str


class CheckReport(BaseModel):
    """Serialises (`to_json`) to exactly the JSON object of section 7, keys in that order."""

    model_config = ConfigDict(frozen=True)

    file_name: str
    encoding: Encoding | None  # None when the file was refused before it could be decoded
    status: UploadStatus
    rows_total: int
    rows_valid: int
    rows_invalid: int
    rows_warned: int
    file_errors: list[FileErrorReport]
    issues: list[Issue]

    def to_json(self) -> str:
        return self.model_dump_json()

    @property
    def exit_code(self) -> int:
        """0 when the upload would be accepted (wholly or partly), 1 otherwise."""
        return 1 if self.status in (UploadStatus.FAILED, UploadStatus.REJECTED) else 0


def check_file(
    path: Path | str,
    *,
    today: date,
    policy: Policy = Policy.ALL_OR_NOTHING,
    reference: ReferenceData | None = None,
    size_limit_bytes: int = DEFAULT_SIZE_LIMIT_BYTES,
    row_limit: int = DEFAULT_ROW_LIMIT,
) -> CheckReport:
    """Validates a file as the pipeline would, skipping DUP_02 and FILE_07 (they need the
    database). `today` is the upload date. Raises OSError when the file cannot be read."""
    file_name = Path(path).name
    reference = bundled_reference() if reference is None else reference
    # Size first, from the file system: a file over the limit is never read.
    if (size_bytes := os.stat(path).st_size) > size_limit_bytes:
        return _rejected(file_name, None, size_error(size_bytes, size_limit_bytes))
    open_binary = path_opener(path)
    with open_binary() as stream:
        inspection = inspect_stream(stream, size_limit_bytes=size_limit_bytes)
    encoding = inspection.encoding
    if inspection.error is not None or encoding is None:
        return _rejected(file_name, encoding, inspection.error)

    layout = detect_layout(open_binary, encoding)
    if isinstance(layout, FileError):
        return _rejected(file_name, encoding, layout)
    reader = RecordReader(open_binary, encoding, layout.delimiter)
    records = reader.records()
    rows_total = rows_invalid = rows_warned = 0
    issues: list[Issue] = []
    header_error: FileError | None = None
    if isinstance(layout.header, FileError):
        header_error = layout.header  # provisional: an unparseable file ranks above it
    else:
        validate = RowValidator(layout.header, today, reference).validate
        duplicates = InFileDuplicates()
        for record in records:
            result = validate(record)
            if result is None:
                continue  # blank rows are skipped and not counted
            rows_total += 1
            if rows_total > row_limit:
                break  # FILE_05 unless the rest turns out unparseable: read on, check nothing
            result = duplicates.apply(result)
            if result.issues:
                issues.extend(result.issues)
                if not result.is_valid:
                    rows_invalid += 1
                elif result.has_warning:
                    rows_warned += 1
    reader.drain(records)

    file_error = file_error_after_reading(
        unparseable=reader.error,
        header=header_error,
        rows_total=rows_total,
        row_limit=row_limit,
    )
    if file_error is not None:
        return _rejected(file_name, encoding, file_error)
    sort_issues(issues)
    return CheckReport.model_construct(
        file_name=file_name,
        encoding=encoding,
        status=decide_status(policy, rows_total, rows_invalid, rows_warned, None),
        rows_total=rows_total,
        rows_valid=rows_total - rows_invalid,
        rows_invalid=rows_invalid,
        rows_warned=rows_warned,
        file_errors=[],
        issues=issues,
    )


def _rejected(file_name: str, encoding: Encoding | None, error: FileError | None) -> CheckReport:
    """A refused file: every count 0 and no issues (section 8)."""
    if error is None:
        raise ValueError("a rejected file needs its file error")
    return CheckReport(
        file_name=file_name,
        encoding=encoding,
        status=UploadStatus.REJECTED,
        rows_total=0,
        rows_valid=0,
        rows_invalid=0,
        rows_warned=0,
        file_errors=[FileErrorReport(code=error.code, message=error.message)],
        issues=[],
    )
