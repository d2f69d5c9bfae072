"""The template's columns and the matching of a file's header row against them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from services.core.scheme.codes import MESSAGES, Code, FileError
from services.core.scheme.text import column_letter, normalise_header, trim


class Column(StrEnum):
    """The template columns in template order; the value is the header name."""

    PROVIDER_REFERENCE = "ProviderReference"
    COURSE_CODE = "CourseCode"
    ACHIEVEMENT_DATE = "AchievementDate"
    LEARNER_FORENAME = "LearnerForename"
    LEARNER_SURNAME = "LearnerSurname"
    DATE_OF_BIRTH = "DateOfBirth"
    ULN = "ULN"
    NI_NUMBER = "NINumber"
    CITB_INDIVIDUAL_ID = "CITBIndividualId"
    EMPLOYER_LEVY_NUMBER = "EmployerLevyNumber"
    NOTES = "Notes"


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    column: Column
    letter: str  # in the blank template
    required: str
    format: str
    codes: tuple[Code, ...]  # in the order the scheme lists them

    @property
    def header(self) -> str:
        return self.column.value


_IDENTIFIER = "one of G, H, I"

COLUMNS: Final[tuple[ColumnSpec, ...]] = (
    ColumnSpec(
        Column.PROVIDER_REFERENCE,
        "A",
        "no",
        "free text, at most 50 characters",
        (Code.REF_01,),
    ),
    ColumnSpec(
        Column.COURSE_CODE,
        "B",
        "yes",
        "upper-cased; ^[A-Z0-9][A-Z0-9-]{1,19}$",
        (Code.COURSE_01, Code.COURSE_02, Code.COURSE_03, Code.COURSE_04),
    ),
    ColumnSpec(
        Column.ACHIEVEMENT_DATE,
        "C",
        "yes",
        "date: d/m/yyyy, dd/mm/yyyy or yyyy-mm-dd",
        (Code.ACHDATE_01, Code.ACHDATE_02, Code.ACHDATE_03),
    ),
    ColumnSpec(Column.LEARNER_FORENAME, "D", "yes", "1 to 100 characters", (Code.NAME_01,)),
    ColumnSpec(Column.LEARNER_SURNAME, "E", "yes", "1 to 100 characters", (Code.NAME_02,)),
    ColumnSpec(
        Column.DATE_OF_BIRTH,
        "F",
        "yes",
        "date: d/m/yyyy, dd/mm/yyyy or yyyy-mm-dd",
        (Code.DOB_01, Code.DOB_02),
    ),
    ColumnSpec(
        Column.ULN,
        "G",
        _IDENTIFIER,
        "spaces removed; 10 digits, the first 1 to 9, with a valid check digit",
        (Code.ULN_01, Code.ULN_02, Code.ULN_03),
    ),
    ColumnSpec(
        Column.NI_NUMBER,
        "H",
        _IDENTIFIER,
        "spaces removed, upper-cased; two letters, six digits, a suffix letter A, B, C or D",
        (Code.NINO_01, Code.NINO_03, Code.NINO_02),
    ),
    ColumnSpec(
        Column.CITB_INDIVIDUAL_ID,
        "I",
        _IDENTIFIER,
        "spaces removed, upper-cased; 5 to 12 letters and digits",
        (Code.CITBID_01,),
    ),
    ColumnSpec(
        Column.EMPLOYER_LEVY_NUMBER,
        "J",
        "no (see warnings)",
        "upper-cased; spaces, / and - removed; an optional letter followed by 7 to 9 digits",
        (Code.LEVY_01, Code.LEVY_02, Code.LEVY_03),
    ),
    ColumnSpec(
        Column.NOTES,
        "K",
        "no",
        "carriage returns, line feeds and tabs become single spaces; at most 255 characters",
        (Code.NOTES_01, Code.NOTES_02),
    ),
)

# Template order of each column; row-level issues sort after every column.
COLUMN_POSITION: Final[Mapping[Column, int]] = MappingProxyType(
    {spec.column: position for position, spec in enumerate(COLUMNS)}
)
COLUMN_OF_CODE: Final[Mapping[Code, Column]] = MappingProxyType(
    {code: spec.column for spec in COLUMNS for code in spec.codes}
)
# FILE_04 names at most this many header problems, then "and N more" (section 5).
MAX_NAMED_HEADER_PROBLEMS: Final = 20
_BY_NORMALISED_HEADER: Final = MappingProxyType(
    {normalise_header(spec.header): spec.column for spec in COLUMNS}
)


@dataclass(frozen=True, slots=True)
class HeaderMap:
    """Where each template column is in the file."""

    indices: tuple[int, ...]  # zero-based cell index of each template column, template order
    width: int  # header cells up to the last non-empty one; cells beyond are "extra"

    def index(self, column: Column) -> int:
        return self.indices[COLUMN_POSITION[column]]


def match_header(cells: Sequence[str]) -> HeaderMap | FileError:
    """Matches a header row (section 1): each template header exactly once, nothing else.

    Unknown headers are named by their column letter, not their text: when the header row is
    missing, the "headers" are a learner's data.
    """
    width = len(cells)
    while width and not trim(cells[width - 1]):
        width -= 1  # fully empty cells at the end of the header row are ignored
    found: dict[Column, list[int]] = {spec.column: [] for spec in COLUMNS}
    unknown: list[int] = []
    empty: list[int] = []
    for index in range(width):
        key = normalise_header(cells[index])
        if not key:
            empty.append(index)
        elif (column := _BY_NORMALISED_HEADER.get(key)) is not None:
            found[column].append(index)
        else:
            unknown.append(index)
    missing = [column for column, indices in found.items() if not indices]
    duplicated = {column: indices for column, indices in found.items() if len(indices) > 1}
    if not (missing or duplicated or unknown or empty):
        return HeaderMap(tuple(found[spec.column][0] for spec in COLUMNS), width)
    return FileError(Code.FILE_04, _header_message(missing, duplicated, unknown, empty))


def _header_message(
    missing: list[Column],
    duplicated: dict[Column, list[int]],
    unknown: list[int],
    empty: list[int],
) -> str:
    """Names at most `MAX_NAMED_HEADER_PROBLEMS` problems (section 5), then "and N more".

    A problem is a missing header, a duplicated header, an unknown header cell or an empty one;
    every name is a template header or a column letter, so the message stays short whatever
    the header row holds.
    """
    total = len(missing) + len(duplicated) + len(unknown) + len(empty)
    budget = MAX_NAMED_HEADER_PROBLEMS
    missing, budget = missing[:budget], budget - min(budget, len(missing))
    named_duplicates = list(duplicated.items())[:budget]
    budget -= len(named_duplicates)
    unknown, budget = unknown[:budget], budget - min(budget, len(unknown))
    empty = empty[:budget]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(column.value for column in missing)}")
    problems += [
        f"{column.value} appears {len(indices)} times (columns {_letters(indices)})"
        for column, indices in named_duplicates
    ]
    if unknown:
        noun = "the header in column" if len(unknown) == 1 else "the headers in columns"
        verb = "is not a template header" if len(unknown) == 1 else "are not template headers"
        problems.append(f"{noun} {_letters(unknown)} {verb}")
    if empty:
        noun = "the header in column" if len(empty) == 1 else "the headers in columns"
        verb = "is empty" if len(empty) == 1 else "are empty"
        problems.append(f"{noun} {_letters(empty)} {verb}")
    named = len(missing) + len(named_duplicates) + len(unknown) + len(empty)
    if total > named:
        problems.append(f"and {total - named:,} more")
    message = f"{MESSAGES[Code.FILE_04].rstrip('.')}: {'; '.join(problems)}."
    if len(missing) == len(COLUMNS):
        message += (
            " No template header was found: the first row, after any blank rows or guidance"
            " rows (a first cell starting with #), must be the header row"
            f" {template_header_line()}."
        )
    return message


def _letters(indices: list[int]) -> str:
    """The column letters of a duplicated header are bounded too: the first
    `MAX_NAMED_HEADER_PROBLEMS`, then "and N more"."""
    letters = [column_letter(index) for index in indices[:MAX_NAMED_HEADER_PROBLEMS]]
    if len(indices) > len(letters):
        return f"{', '.join(letters)} and {len(indices) - len(letters):,} more"
    return letters[0] if len(letters) == 1 else f"{', '.join(letters[:-1])} and {letters[-1]}"


def template_header_line() -> str:
    return ",".join(spec.header for spec in COLUMNS)
