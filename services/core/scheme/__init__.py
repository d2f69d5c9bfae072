"""The technical CSV scheme: codes, columns, rules and the validation of a file.

Pure: no database, broker or HTTP library is imported here (a unit test checks it), so the
gateway, the validator workers and the offline check all run exactly this code.
"""

from services.core.scheme.check import CheckReport, FileErrorReport, check_file
from services.core.scheme.codes import (
    MESSAGES,
    SEVERITY,
    Code,
    FileError,
    Policy,
    Severity,
    UploadStatus,
)
from services.core.scheme.columns import COLUMNS, Column, HeaderMap, match_header
from services.core.scheme.file_inspection import (
    Encoding,
    FileInspector,
    Inspection,
    inspect_stream,
    size_error,
)
from services.core.scheme.outcome import (
    accepts_rows,
    decide_status,
    file_error_after_reading,
    issue_position,
    sort_issues,
)
from services.core.scheme.records import (
    Layout,
    Opener,
    Record,
    RecordReader,
    detect_layout,
    path_opener,
)
from services.core.scheme.reference import (
    Course,
    Employer,
    InMemoryReference,
    ReferenceData,
    bundled_reference,
    load_reference_dir,
)
from services.core.scheme.scheme_document import scheme_document, template_csv
from services.core.scheme.validation import (
    Achievement,
    DuplicateKey,
    InFileDuplicates,
    Issue,
    RowResult,
    RowValidator,
    duplicate_issue,
    duplicate_key_text,
)

__all__ = [
    "COLUMNS",
    "MESSAGES",
    "SEVERITY",
    "Achievement",
    "CheckReport",
    "Code",
    "Column",
    "Course",
    "DuplicateKey",
    "Employer",
    "Encoding",
    "FileError",
    "FileErrorReport",
    "FileInspector",
    "HeaderMap",
    "InFileDuplicates",
    "InMemoryReference",
    "Inspection",
    "Issue",
    "Layout",
    "Opener",
    "Policy",
    "Record",
    "RecordReader",
    "ReferenceData",
    "RowResult",
    "RowValidator",
    "Severity",
    "UploadStatus",
    "accepts_rows",
    "bundled_reference",
    "check_file",
    "decide_status",
    "detect_layout",
    "duplicate_issue",
    "duplicate_key_text",
    "file_error_after_reading",
    "inspect_stream",
    "issue_position",
    "load_reference_dir",
    "match_header",
    "path_opener",
    "scheme_document",
    "size_error",
    "sort_issues",
    "template_csv",
]
