"""The offline check (section 7): a whole file through the validator's code, no servers.

It is also the reference for the order of the file-level checks, which the pipeline follows
with its own storage, batching and database-side duplicate rules.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict

from services.core.scheme.bulk_rules import BulkValidator, InFileDuplicateKeys
from services.core.scheme.codes import Code, FileError, Policy, UploadStatus
from services.core.scheme.columns import HeaderMap
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
from services.core.scheme.record_scanner import (
    ChunkPlan,
    Opener,
    Record,
    Segment,
    SegmentBytes,
    read_chunk,
    read_chunk_bytes,
    scan_records,
)
from services.core.scheme.records import detect_layout, path_opener
from services.core.scheme.reference import InMemoryReference, ReferenceData, bundled_reference
from services.core.scheme.validation import (
    InFileDuplicates,
    Issue,
    RowValidator,
    duplicate_issue,
)
from services.core.scheme.workbook_records import (
    SIGNATURE_BYTES,
    WorkbookEncoding,
    has_workbook_signature,
    write_sheet_csv,
)

# The bulk pass takes the planned chunks together up to these bounds: its frames of one chunk
# are what the check holds in memory at once (a few times the chunk's bytes), and each chunk
# costs some milliseconds of planning whatever its rows.
CHECK_CHUNK_RECORDS: Final = 60_000
CHECK_CHUNK_BYTES: Final = 8 * 1024 * 1024


class FileErrorReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: Code
    message: str


class CheckReport(BaseModel):
    """Serialises (`to_json`) to exactly the JSON object of section 7, keys in that order."""

    model_config = ConfigDict(frozen=True)

    file_name: str
    # None when the file was refused before it could be decoded; `xlsx` for the guided workbook
    encoding: Encoding | WorkbookEncoding | None
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
    fallbacks: Counter[str] | None = None,
) -> CheckReport:
    """Validates a file as the pipeline would, skipping DUP_02 and FILE_07 (they need the
    database). `today` is the upload date. Raises OSError when the file cannot be read.

    `fallbacks`, when given, is added the records that the bulk pass's reading left to the csv
    module, by reason (`segment_records.FALLBACK_REASONS`): what the benchmarks report."""
    file_name = Path(path).name
    reference = bundled_reference() if reference is None else reference
    # Size first, from the file system: a file over the limit is never read.
    if (size_bytes := os.stat(path).st_size) > size_limit_bytes:
        return _rejected(file_name, None, size_error(size_bytes, size_limit_bytes))
    open_binary = path_opener(path)
    with open_binary() as stream:
        head = stream.read(SIGNATURE_BYTES)
    checks = _Checks(today, policy, reference, size_limit_bytes, row_limit, fallbacks)
    if has_workbook_signature(head):
        return _check_workbook(open_binary, file_name, checks)
    return _check_csv(open_binary, file_name, checks)


@dataclass(frozen=True, slots=True)
class _Checks:
    """What `check_file` was asked, passed on to the reading of a CSV or a workbook."""

    today: date
    policy: Policy
    reference: ReferenceData
    size_limit_bytes: int
    row_limit: int
    fallbacks: Counter[str] | None


def _check_workbook(open_binary: Opener, file_name: str, checks: _Checks) -> CheckReport:
    """Section 9: the guided workbook's Achievements sheet written out as CSV records (row
    numbers the sheet's), then checked exactly as a CSV file; any other workbook, or one past
    the ZIP bounds, is refused before it is read."""
    with tempfile.TemporaryDirectory(prefix="achievements-check-") as folder:
        sheet_csv = Path(folder) / "achievements.csv"
        with sheet_csv.open("wb") as out:
            error = write_sheet_csv(open_binary, out, size_limit_bytes=checks.size_limit_bytes)
        if error is not None:
            return _rejected(file_name, None, error)
        report = _check_csv(path_opener(sheet_csv), file_name, checks)
    return report.model_copy(update={"encoding": WorkbookEncoding.XLSX})


def _check_csv(open_binary: Opener, file_name: str, checks: _Checks) -> CheckReport:
    today, policy, reference = checks.today, checks.policy, checks.reference
    size_limit_bytes, row_limit, fallbacks = (
        checks.size_limit_bytes,
        checks.row_limit,
        checks.fallbacks,
    )
    with open_binary() as stream:
        inspection = inspect_stream(stream, size_limit_bytes=size_limit_bytes)
    encoding = inspection.encoding
    if inspection.error is not None or encoding is None:
        return _rejected(file_name, encoding, inspection.error)

    layout = detect_layout(open_binary, encoding)
    if isinstance(layout, FileError):
        return _rejected(file_name, encoding, layout)
    # One scan over the bytes finds every record boundary and checks section 8's bounds, so an
    # unparseable file (FILE_01, which outranks the header's FILE_04) is known before any row
    # is validated, and no record larger than the bounds is ever parsed.
    with open_binary() as stream:
        scan = scan_records(
            stream, layout.delimiter, encoding=encoding, header_row=layout.header_row
        )
    if scan.error is not None:
        return _rejected(file_name, encoding, scan.error)
    if isinstance(layout.header, FileError):
        return _rejected(file_name, encoding, layout.header)

    if isinstance(reference, InMemoryReference):
        chunks = _chunk_segments(open_binary, encoding, scan.chunks)
        rows_total, rows_invalid, rows_warned, issues = _validate_chunks(
            chunks, layout.delimiter, layout.header, today, reference, row_limit, fallbacks
        )
    else:
        records = _chunk_records(open_binary, encoding, layout.delimiter, scan.chunks)
        try:
            rows_total, rows_invalid, rows_warned, issues = _validate_records(
                records, layout.header, today, reference, row_limit
            )
        finally:
            records.close()

    file_error = file_error_after_reading(
        unparseable=None, header=None, rows_total=rows_total, row_limit=row_limit
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


def _chunk_records(
    open_binary: Opener, encoding: Encoding, delimiter: str, chunks: Iterable[ChunkPlan]
) -> Generator[Record, None, None]:
    """The records of every chunk in file order: at most one chunk's bytes in memory."""
    for chunk in chunks:
        yield from read_chunk(open_binary, encoding, delimiter, chunk.segments)


def _chunk_segments(
    open_binary: Opener, encoding: Encoding, chunks: Iterable[ChunkPlan]
) -> Iterator[list[SegmentBytes]]:
    """The records of every chunk in file order, for the bulk pass: consecutive chunks of the
    plan taken together up to CHECK_CHUNK_RECORDS records or CHECK_CHUNK_BYTES bytes, segments
    that meet joined into one. As UTF-8 bytes (`read_chunk_bytes`): Polars reads those
    without a `str` to encode again."""
    segments: list[Segment] = []
    records = size_bytes = 0
    for chunk in chunks:
        if segments and (
            records + chunk.records > CHECK_CHUNK_RECORDS
            or size_bytes + chunk.size_bytes > CHECK_CHUNK_BYTES
        ):
            yield read_chunk_bytes(open_binary, encoding, segments)
            segments, records, size_bytes = [], 0, 0
        for segment in chunk.segments:
            if segments and segments[-1][1] == segment[0]:  # no skipped blank run between
                segments[-1] = (segments[-1][0], segment[1], segments[-1][2])
            else:
                segments.append(segment)
        records += chunk.records
        size_bytes += chunk.size_bytes
    if segments:
        yield read_chunk_bytes(open_binary, encoding, segments)


def _validate_records(
    records: Iterable[Record],
    header: HeaderMap,
    today: date,
    reference: ReferenceData,
    row_limit: int,
) -> tuple[int, int, int, list[Issue]]:
    """Every record through the row validator, then DUP_01 in memory: `rows_total` (counting
    stops just past `row_limit`: FILE_05, the rest needs no look), `rows_invalid`,
    `rows_warned` and the issues, not yet sorted. For a reference that cannot list its
    catalogue and register."""
    rows_total = rows_invalid = rows_warned = 0
    issues: list[Issue] = []
    validate = RowValidator(header, today, reference).validate
    duplicates = InFileDuplicates()
    for record in records:
        result = validate(record)
        if result is None:
            continue  # blank rows are skipped and not counted
        rows_total += 1
        if rows_total > row_limit:
            break
        result = duplicates.apply(result)
        if result.issues:
            issues.extend(result.issues)
            if not result.is_valid:
                rows_invalid += 1
            elif result.has_warning:
                rows_warned += 1
    return rows_total, rows_invalid, rows_warned, issues


def _validate_chunks(
    chunks: Iterable[list[SegmentBytes]],
    delimiter: str,
    header: HeaderMap,
    today: date,
    reference: InMemoryReference,
    row_limit: int,
    fallbacks: Counter[str] | None = None,
) -> tuple[int, int, int, list[Issue]]:
    """`_validate_records` with both passes: a chunk at a time, the bulk pass proves most rows
    valid in Polars and the row validator explains every other row (`bulk_rules`); DUP_01 then
    runs over both passes' keys, the earliest row of a key winning."""
    rows_total = rows_invalid = rows_warned = 0
    issues: list[Issue] = []
    validator = BulkValidator(header, today, reference, values=False)
    in_file = InFileDuplicateKeys()
    for chunk in chunks:
        bulk = validator.bulk_bytes(chunk, delimiter)
        exact = validator.exact(bulk.exact)
        rows_total += bulk.rows_valid + len(exact)
        if rows_total > row_limit:
            break
        repeated = in_file.find(bulk, exact)
        for result in exact:
            if result.row_number in repeated:
                repeated.discard(result.row_number)
                result = result.with_row_issue(duplicate_issue(result.row_number, Code.DUP_01))
            if result.issues:
                issues.extend(result.issues)
                if not result.is_valid:
                    rows_invalid += 1
                elif result.has_warning:
                    rows_warned += 1
        # What is left of `repeated` are proven rows: DUP_01 makes them invalid.
        warned, warning_issues = bulk.warning_issues()
        issues.extend(warning_issues)
        rows_warned += len(warned) - len(repeated.intersection(warned))
        issues.extend(duplicate_issue(row_number, Code.DUP_01) for row_number in repeated)
        rows_invalid += len(repeated)
    if fallbacks is not None:
        fallbacks.update(validator.fallbacks)
    return rows_total, rows_invalid, rows_warned, issues


def _rejected(
    file_name: str, encoding: Encoding | WorkbookEncoding | None, error: FileError | None
) -> CheckReport:
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
