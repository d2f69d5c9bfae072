"""Every code of the CSV scheme, its severity and its message, in one place.

Messages name the rule in plain English. They never contain a value from the file: the same
message goes to logs, events and error reports, where personal data must not appear.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final


class Severity(StrEnum):
    ERROR = "error"  # the row is invalid
    WARNING = "warning"  # reported; the row stays valid


class Policy(StrEnum):
    ALL_OR_NOTHING = "all_or_nothing"  # one invalid row fails the whole upload (the default)
    VALID_ROWS = "valid_rows"  # valid rows are accepted, invalid rows are reported


class UploadStatus(StrEnum):
    """An upload's status (scheme section 6): the only spelling of these words in the code.

    `services.core.states.UploadState` is this enum; `uploads.status` has a CHECK listing it.
    """

    RECEIVED = "received"  # stored, waiting for a validator
    VALIDATING = "validating"  # a validator is reading it
    REJECTED = "rejected"  # a file-level code applies; nothing accepted
    FAILED = "failed"  # row errors under all_or_nothing, or no valid row; nothing accepted
    PARTIALLY_ACCEPTED = "partially_accepted"  # valid_rows policy; the valid rows accepted
    PASSED_WITH_WARNINGS = "passed_with_warnings"  # every row valid, at least one warning
    PASSED = "passed"  # every row valid, no warning
    # The pipeline could not finish for a reason not in the file; nothing accepted. Never an
    # outcome of the offline check.
    ERRORED = "errored"


class Code(StrEnum):
    # File level: the whole file is refused.
    FILE_01 = "FILE_01"  # not CSV text: NUL bytes, a workbook, or unparseable
    FILE_02 = "FILE_02"  # empty, or no non-blank data row
    FILE_03 = "FILE_03"  # larger than the size limit
    FILE_04 = "FILE_04"  # header row: a template header missing, duplicated, or unknown
    FILE_05 = "FILE_05"  # more data rows than the row limit
    FILE_06 = "FILE_06"  # neither UTF-8 nor Windows-1252
    FILE_07 = "FILE_07"  # the same bytes already accepted for this ATO (needs the database)
    # Column A, ProviderReference.
    REF_01 = "REF_01"  # over 50 characters or a control character
    # Column B, CourseCode.
    COURSE_01 = "COURSE_01"  # empty
    COURSE_02 = "COURSE_02"  # bad format
    COURSE_03 = "COURSE_03"  # not in the course catalogue
    COURSE_04 = "COURSE_04"  # not approved on the achievement date
    # Column C, AchievementDate.
    ACHDATE_01 = "ACHDATE_01"  # empty or not a date
    ACHDATE_02 = "ACHDATE_02"  # after the upload date
    ACHDATE_03 = "ACHDATE_03"  # warning: more than 10 days before the upload date
    # Columns D and E, the learner's names.
    NAME_01 = "NAME_01"  # forename empty, too long, or a forbidden character
    NAME_02 = "NAME_02"  # surname, same rule
    # Column F, DateOfBirth.
    DOB_01 = "DOB_01"  # empty or not a date
    DOB_02 = "DOB_02"  # age on the achievement date under 15, or 115 and over
    # Column G, ULN.
    ULN_01 = "ULN_01"  # not 10 digits starting 1 to 9
    ULN_02 = "ULN_02"  # the temporary number 9999999999
    ULN_03 = "ULN_03"  # check digit wrong
    # Column H, NINumber.
    NINO_01 = "NINO_01"  # bad format
    NINO_02 = "NINO_02"  # a prefix that is never issued
    NINO_03 = "NINO_03"  # an administrative prefix
    # Column I, CITBIndividualId.
    CITBID_01 = "CITBID_01"  # not 5 to 12 ASCII letters and digits
    # Column J, EmployerLevyNumber.
    LEVY_01 = "LEVY_01"  # bad format
    LEVY_02 = "LEVY_02"  # warning: not in the register, or not grant-eligible
    LEVY_03 = "LEVY_03"  # warning: empty
    # Column K, Notes.
    NOTES_01 = "NOTES_01"  # over 255 characters or a control character
    NOTES_02 = "NOTES_02"  # warning: starts like a spreadsheet formula
    # Row level, checked after the cells.
    ID_01 = "ID_01"  # no identifier given (ULN, NINumber, CITBIndividualId)
    ROW_01 = "ROW_01"  # a non-empty cell beyond the header's columns
    DUP_01 = "DUP_01"  # same achievement as an earlier row of the same file
    DUP_02 = "DUP_02"  # same achievement accepted from an earlier upload (needs the database)


WARNING_CODES: Final = frozenset({Code.ACHDATE_03, Code.LEVY_02, Code.LEVY_03, Code.NOTES_02})

SEVERITY: Final[Mapping[Code, Severity]] = MappingProxyType(
    {code: Severity.WARNING if code in WARNING_CODES else Severity.ERROR for code in Code}
)

FILE_CODES: Final = tuple(code for code in Code if code.startswith("FILE_"))
ROW_LEVEL_CODES: Final = (Code.ID_01, Code.ROW_01, Code.DUP_01, Code.DUP_02)

_DATE_FORMATS = "d/m/yyyy, dd/mm/yyyy or yyyy-mm-dd"
_NAME_RULE = '1 to 100 characters with no digits, control characters, | or "'
_DUPLICATE = "the same course code, achievement date and an equal ULN, NI number or CITB ID"

# The message of each code. File codes with several causes have more specific messages below,
# and the format codes of identifier columns have a spreadsheet-damage message (see `damaged`).
MESSAGES: Final[Mapping[Code, str]] = MappingProxyType(
    {
        Code.FILE_01: "The file is not a CSV text file.",
        Code.FILE_02: "The file has no data: it is empty, or it has a header row and no"
        " non-blank data row.",
        Code.FILE_03: "The file is larger than the size limit.",
        Code.FILE_04: "The header row does not match the template.",
        Code.FILE_05: "The file has more data rows than the row limit.",
        Code.FILE_06: "The file is neither UTF-8 nor Windows-1252 text. Save it from your"
        " spreadsheet as 'CSV UTF-8' and upload it again.",
        Code.FILE_07: "This exact file (the same bytes) was already accepted and has not been"
        " withdrawn.",
        Code.REF_01: "ProviderReference must be at most 50 characters with no control characters.",
        Code.COURSE_01: "CourseCode is required.",
        Code.COURSE_02: "CourseCode must be 2 to 20 letters, digits and hyphens, starting with a"
        " letter or digit.",
        Code.COURSE_03: "CourseCode is not in the course catalogue.",
        Code.COURSE_04: "The course was not approved on the achievement date (the date is outside"
        " the course's approval period in the catalogue).",
        Code.ACHDATE_01: f"AchievementDate is required and must be a real date written as"
        f" {_DATE_FORMATS}.",
        Code.ACHDATE_02: "AchievementDate is after the upload date.",
        Code.ACHDATE_03: "AchievementDate is more than 10 days before the upload date.",
        Code.NAME_01: f"LearnerForename is required: {_NAME_RULE}.",
        Code.NAME_02: f"LearnerSurname is required: {_NAME_RULE}.",
        Code.DOB_01: f"DateOfBirth is required and must be a real date written as {_DATE_FORMATS}.",
        Code.DOB_02: "The learner's age on the achievement date must be at least 15 and under 115.",
        Code.ULN_01: "ULN must be 10 digits, the first of them 1 to 9.",
        Code.ULN_02: "ULN is the temporary number (all nines), which cannot be used: give the"
        " learner's real ULN or another identifier.",
        Code.ULN_03: "ULN is not a valid number: its check digit (the last digit) does not match"
        " the first nine digits.",
        Code.NINO_01: "NINumber must be two letters, six digits and a final letter A, B, C or D.",
        Code.NINO_02: "NINumber starts with a prefix that is never issued.",
        Code.NINO_03: "NINumber starts with an administrative prefix, not a real National"
        " Insurance number.",
        Code.CITBID_01: "CITBIndividualId must be 5 to 12 letters and digits.",
        Code.LEVY_01: "EmployerLevyNumber must be an optional letter followed by 7 to 9 digits.",
        Code.LEVY_02: "EmployerLevyNumber is not in the levy register, or the employer is not"
        " grant-eligible: the achievement is recorded but no grant is claimed.",
        Code.LEVY_03: "EmployerLevyNumber is empty: the achievement is recorded but no grant is"
        " claimed.",
        Code.NOTES_01: "Notes must be at most 255 characters with no control characters (line"
        " breaks and tabs become spaces).",
        Code.NOTES_02: "Notes starts with =, +, - or @, which a spreadsheet would run as a"
        " formula.",
        Code.ID_01: "At least one of ULN, NINumber and CITBIndividualId is required.",
        Code.ROW_01: "The row has a non-empty cell beyond the columns of the header row.",
        Code.DUP_01: f"An earlier row of this file is the same achievement ({_DUPLICATE}).",
        Code.DUP_02: f"The same achievement ({_DUPLICATE}) was accepted from an earlier upload"
        " and has not been withdrawn.",
    }
)


@dataclass(frozen=True, slots=True)
class FileError:
    """A file-level outcome: the whole file is refused with this code."""

    code: Code
    message: str


_EXPORT_AS_CSV = (
    "Open it in your spreadsheet and save or export it as 'CSV UTF-8' or 'CSV (Comma"
    " delimited)', then upload the CSV file."
)
FILE_01_WORKBOOK: Final = (
    f"The file is a spreadsheet workbook (such as .xlsx or .xls), not a CSV file. {_EXPORT_AS_CSV}"
)
FILE_01_NUL: Final = (
    "The file contains NUL bytes, so it is not CSV text (a 'Unicode text' or UTF-16 export looks"
    f" like this). {_EXPORT_AS_CSV}"
)
FILE_01_OPEN_QUOTE: Final = (
    'The file cannot be read as CSV: a quoted field is still open at the end of the file (a "'
    " that starts a field is never closed)."
)
FILE_01_TOO_LONG: Final = (
    "The file cannot be read as CSV: a line or a field is far longer than any valid row, usually"
    ' because a " that starts a field is never closed.'
)
_NEVER_CLOSED = 'This usually means a " that starts a field is never closed.'


# The bounds of one record (section 8, v1.1). Each message names the row and the bound, never
# the record's content.
def record_too_long_message(row: int, limit_bytes: int) -> str:
    return (
        f"The file cannot be read as CSV: row {row:,} is longer than {limit_bytes:,} bytes (line"
        f" breaks inside quoted fields included), far longer than any valid row. {_NEVER_CLOSED}"
    )


def too_many_cells_message(row: int, limit_cells: int) -> str:
    return (
        f"The file cannot be read as CSV: row {row:,} has more than {limit_cells:,} cells, far"
        " more than the template's columns."
    )


def field_too_long_message(row: int, limit_chars: int) -> str:
    return (
        f"The file cannot be read as CSV: a field in row {row:,} is longer than {limit_chars:,}"
        f" characters, far longer than any valid value. {_NEVER_CLOSED}"
    )


# Section 9: what may stand above the header row, and the FILE_04 messages when something else
# does. They name rows, never their content.
MAX_RECORDS_BEFORE_HEADER: Final = 10
GUIDANCE_MARK: Final = "#"


def row_ranges(rows: Sequence[int]) -> str:
    """`[1, 2, 3, 5]` as "rows 1-3 and 5", `[4]` as "row 4" (rows in ascending order)."""
    spans: list[str] = []
    index = 0
    while index < len(rows):
        end = index
        while end + 1 < len(rows) and rows[end + 1] == rows[end] + 1:
            end += 1
        first, last = rows[index], rows[end]
        spans.append(f"{first}" if first == last else f"{first}-{last}")
        index = end + 1
    named = spans[0] if len(spans) == 1 else ", ".join(spans[:-1]) + " and " + spans[-1]
    return ("row " if len(rows) == 1 else "rows ") + named


def rows_above_header_message(header_row: int, rows: Sequence[int]) -> str:
    """FILE_04 when the header stands lower down, below `rows` that are neither guidance nor
    blank records."""
    named = row_ranges(rows)
    not_guidance = "is not a guidance row" if len(rows) == 1 else "are not guidance rows"
    return (
        f"The header row does not match the template: the template's header row was found at"
        f" row {header_row}, below {named}, which {not_guidance}. Delete {named}, then upload"
        f" the file again. Only blank rows, or guidance rows whose first cell starts with"
        f" {GUIDANCE_MARK}, may stand above the header row (at most {MAX_RECORDS_BEFORE_HEADER})."
    )


def too_many_rows_above_header_message(header_row: int) -> str:
    """FILE_04 when the header stands lower down, below more guidance or blank records than
    may stand above it."""
    return (
        f"The header row does not match the template: the template's header row was found at"
        f" row {header_row}, below {row_ranges(range(1, header_row))}, guidance or blank rows,"
        f" but at most {MAX_RECORDS_BEFORE_HEADER} may stand above the header row. Delete"
        f" {header_row - 1 - MAX_RECORDS_BEFORE_HEADER} of them, then upload the file again."
    )


FILE_02_EMPTY: Final = "The file is empty."
FILE_02_NO_DATA: Final = "The file has a header row but no non-blank data row."


def file_too_large_message(limit_bytes: int) -> str:
    """FILE_03 names the limit (configuration, not learner data) so the user can split the file."""
    mib, remainder = divmod(limit_bytes, 1024 * 1024)
    limit = f"{mib} MB" if remainder == 0 else f"{limit_bytes:,} bytes"
    return f"The file is larger than the size limit of {limit}."


def too_many_rows_message(row_limit: int) -> str:
    return f"The file has more than {row_limit:,} data rows: split it into smaller files."


def damaged(column: str) -> str:
    """The message for a value a spreadsheet turned into scientific notation (`1.23457E+09`)."""
    return (
        f"The spreadsheet changed this {column} value into a number in scientific notation, so"
        f" digits were lost. Format the {column} column as text, enter the value again and"
        " export the file again."
    )
