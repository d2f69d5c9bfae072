"""The cell rules of section 2, column by column, each in the order the scheme checks them.

Every check takes a cell already cleaned by `text.clean_cell` (trimmed, `="…"` unwrapped) and
returns the first rule that fails as a `Finding`, or None. Findings are constants built once,
so a failing cell allocates nothing but its `Issue`. Regexes use `fullmatch` (a `$` would
accept a trailing newline) and `[0-9]` (`\\d` matches any Unicode digit).
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from typing import Final

from services.core.scheme.codes import MESSAGES, SEVERITY, Code, Severity, damaged
from services.core.scheme.columns import Column
from services.core.scheme.reference import Course, Employer, ReferenceData


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule that failed for a cell: its code, severity and message."""

    code: Code
    severity: Severity
    message: str


FINDING: Final[Mapping[Code, Finding]] = MappingProxyType(
    {code: Finding(code, SEVERITY[code], MESSAGES[code]) for code in Code}
)

# A value like 1.23457E+09: what a spreadsheet shows for a long number in a General column.
# Recognised only where the value already fails the column's format, so a CITB ID such as
# 12E4567 (valid letters and digits) is never mistaken for damage.
_SCIENTIFIC_RE: Final = re.compile(r"[0-9]+(?:[.,][0-9]+)?[eE][+-]?[0-9]+")
DAMAGED_FINDINGS: Final[Mapping[Code, Finding]] = MappingProxyType(
    {
        Code.ULN_01: Finding(Code.ULN_01, Severity.ERROR, damaged(Column.ULN.value)),
        Code.NINO_01: Finding(Code.NINO_01, Severity.ERROR, damaged(Column.NI_NUMBER.value)),
        Code.CITBID_01: Finding(
            Code.CITBID_01, Severity.ERROR, damaged(Column.CITB_INDIVIDUAL_ID.value)
        ),
        Code.LEVY_01: Finding(
            Code.LEVY_01, Severity.ERROR, damaged(Column.EMPLOYER_LEVY_NUMBER.value)
        ),
    }
)


def _format_finding(value: str, code: Code) -> Finding:
    return DAMAGED_FINDINGS[code] if _SCIENTIFIC_RE.fullmatch(value) else FINDING[code]


# Unicode category Cc: C0 controls, DEL and C1 controls (the body of a character class; the
# bulk pass in `bulk_rules` reads the same ranges).
CONTROL_CLASS: Final = "\x00-\x1f\x7f-\x9f"
_CONTROL_RE: Final = re.compile(f"[{CONTROL_CLASS}]")
# "A digit" in a name is any Unicode decimal digit: \d in a str pattern is category Nd.
# Names also refuse the bidirectional embedding, override and isolate characters (section 8,
# v1.1): no name needs them, and they make a report show text in another order than stored.
BIDI_CONTROL_CLASS: Final = "\u202a-\u202e\u2066-\u2069"
_NAME_FORBIDDEN_RE: Final = re.compile(f'[\\d{CONTROL_CLASS}{BIDI_CONTROL_CLASS}|"]')

# --- A: ProviderReference --------------------------------------------------------------------
PROVIDER_REFERENCE_MAX_CHARS: Final = 50


def check_provider_reference(value: str) -> Finding | None:
    if len(value) > PROVIDER_REFERENCE_MAX_CHARS or _CONTROL_RE.search(value):
        return FINDING[Code.REF_01]
    return None


# --- B: CourseCode ---------------------------------------------------------------------------
# The patterns are public (as text) for the bulk pass, which runs them in another regex engine.
COURSE_CODE_PATTERN: Final = r"[A-Z0-9][A-Z0-9-]{1,19}"
_COURSE_RE: Final = re.compile(COURSE_CODE_PATTERN)


def normalise_course_code(value: str) -> str:
    return value.upper()


def check_course_code(code: str, reference: ReferenceData) -> tuple[Course | None, Finding | None]:
    """COURSE_01..03; returns the catalogue entry when the code is in it."""
    if not code:
        return None, FINDING[Code.COURSE_01]
    if not _COURSE_RE.fullmatch(code):
        return None, FINDING[Code.COURSE_02]
    course = reference.course(code)
    if course is None:
        return None, FINDING[Code.COURSE_03]
    return course, None


def check_course_approval(course: Course, achievement_date: date) -> Finding | None:
    """COURSE_04, only when the achievement date is valid."""
    return None if course.approved_on(achievement_date) else FINDING[Code.COURSE_04]


# --- C and F: dates --------------------------------------------------------------------------
_DAY_MONTH_YEAR_RE: Final = re.compile(r"([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})")
_ISO_RE: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
ACHIEVEMENT_MAX_AGE_DAYS: Final = 10
MIN_AGE_YEARS: Final = 15
MAX_AGE_YEARS: Final = 115  # this age and over is an error
_DOB_02: Final = FINDING[Code.DOB_02]


# A file repeats few distinct date strings (a day per achievement, birthdays): parsing each
# once matters, date parsing being the most expensive part of a row.
@functools.lru_cache(maxsize=1 << 16)
def parse_date(value: str) -> date | None:
    """`d/m/yyyy` (day and month of one or two digits) or exactly `yyyy-mm-dd`; must exist."""
    if match := _DAY_MONTH_YEAR_RE.fullmatch(value):
        day, month, year = match.groups()
    elif match := _ISO_RE.fullmatch(value):
        year, month, day = match.groups()
    else:
        return None
    try:
        return date(int(year), int(month), int(day))
    except ValueError:  # 31/02/2026, year 0000
        return None


def check_achievement_date(value: str, today: date) -> tuple[date | None, Finding | None]:
    """ACHDATE_01..03. The date comes back when the cell is valid (a warning leaves it valid)."""
    day = parse_date(value)
    if day is None:
        return None, FINDING[Code.ACHDATE_01]
    if day > today:
        return None, FINDING[Code.ACHDATE_02]
    if (today - day).days > ACHIEVEMENT_MAX_AGE_DAYS:
        return day, FINDING[Code.ACHDATE_03]
    return day, None


def check_date_of_birth(value: str) -> tuple[date | None, Finding | None]:
    """DOB_01."""
    day = parse_date(value)
    return (day, None) if day is not None else (None, FINDING[Code.DOB_01])


def age_on(birth: date, day: date) -> int:
    """Completed years, rising on the birthday (for 29 February, on 1 March in other years)."""
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def check_age(birth: date, achievement_date: date) -> Finding | None:
    """DOB_02, only when both dates are valid. A birth after the achievement is under 15."""
    # age_on, inlined: this runs once a row.
    age = (
        achievement_date.year
        - birth.year
        - ((achievement_date.month, achievement_date.day) < (birth.month, birth.day))
    )
    return None if MIN_AGE_YEARS <= age < MAX_AGE_YEARS else _DOB_02


# --- D and E: names --------------------------------------------------------------------------
NAME_MAX_CHARS: Final = 100


def check_name(value: str, code: Code) -> Finding | None:
    """NAME_01 (forename) or NAME_02 (surname): the same rule."""
    if not value or len(value) > NAME_MAX_CHARS or _NAME_FORBIDDEN_RE.search(value):
        return FINDING[code]
    return None


# --- G: ULN ----------------------------------------------------------------------------------
ULN_PATTERN: Final = r"[1-9][0-9]{9}"
_ULN_RE: Final = re.compile(ULN_PATTERN)
TEMPORARY_ULN: Final = "9999999999"
ULN_WEIGHTS: Final = (10, 9, 8, 7, 6, 5, 4, 3, 2)  # of d1..d9; the check digit is d10
_ULN_ASCII_OFFSET: Final = ord("0") * sum(ULN_WEIGHTS)


def uln_check_digit_ok(uln: str) -> bool:
    """Section 3.1 for ten ASCII digits; weighted sum over the bytes, no per-digit Python loop."""
    digits = uln.encode("ascii")
    remainder: int = (sum(map(operator.mul, ULN_WEIGHTS, digits)) - _ULN_ASCII_OFFSET) % 11
    return remainder != 0 and digits[9] - ord("0") == 10 - remainder


def check_uln(uln: str) -> Finding | None:
    if not _ULN_RE.fullmatch(uln):
        return _format_finding(uln, Code.ULN_01)
    if uln == TEMPORARY_ULN:
        return FINDING[Code.ULN_02]
    if not uln_check_digit_ok(uln):
        return FINDING[Code.ULN_03]
    return None


# --- H: NINumber -----------------------------------------------------------------------------
NINO_PATTERN: Final = r"[A-Z]{2}[0-9]{6}[ABCD]"
_NINO_RE: Final = re.compile(NINO_PATTERN)
NINO_ADMINISTRATIVE_PREFIXES: Final = frozenset({"OO", "CR", "FY", "MW", "NC", "PP", "PY", "PZ"})
NINO_UNISSUED_PREFIXES: Final = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})
_NINO_UNUSED_LETTERS: Final = frozenset("DFIQUV")


def check_ni_number(nino: str) -> Finding | None:
    """NINO_01, then the administrative prefixes (NINO_03) before the unissued ones (NINO_02)."""
    if not _NINO_RE.fullmatch(nino):
        return _format_finding(nino, Code.NINO_01)
    prefix = nino[:2]
    if prefix in NINO_ADMINISTRATIVE_PREFIXES:
        return FINDING[Code.NINO_03]
    if (
        prefix[0] in _NINO_UNUSED_LETTERS
        or prefix[1] in _NINO_UNUSED_LETTERS
        or prefix[1] == "O"
        or prefix in NINO_UNISSUED_PREFIXES
    ):
        return FINDING[Code.NINO_02]
    return None


# --- I: CITBIndividualId ---------------------------------------------------------------------
CITB_ID_PATTERN: Final = r"[A-Z0-9]{5,12}"
_CITB_RE: Final = re.compile(CITB_ID_PATTERN)


def check_citb_id(citb_id: str) -> Finding | None:
    if not _CITB_RE.fullmatch(citb_id):
        return _format_finding(citb_id, Code.CITBID_01)
    return None


# --- J: EmployerLevyNumber -------------------------------------------------------------------
LEVY_NUMBER_PATTERN: Final = r"[A-Z]?[0-9]{7,9}"
_LEVY_RE: Final = re.compile(LEVY_NUMBER_PATTERN)


def check_levy_number(
    levy_number: str, reference: ReferenceData
) -> tuple[Employer | None, Finding | None]:
    """LEVY_03 when empty (never LEVY_01), else LEVY_01, else LEVY_02.

    `levy_number` is normalised with `text.normalise_levy_number`, as the register is, so a
    cell holding only `-` or `/` is empty.
    Returns the register entry when the number is registered and grant-eligible.
    """
    if not levy_number:
        return None, FINDING[Code.LEVY_03]
    if not _LEVY_RE.fullmatch(levy_number):
        return None, _format_finding(levy_number, Code.LEVY_01)
    employer = reference.employer(levy_number)
    if employer is None or not employer.grant_eligible:
        return None, FINDING[Code.LEVY_02]
    return employer, None


# --- K: Notes --------------------------------------------------------------------------------
NOTES_MAX_CHARS: Final = 255
NOTES_BREAKS: Final = "\r\n\t"  # each becomes one space
_NOTES_BREAKS: Final = str.maketrans(dict.fromkeys(NOTES_BREAKS, " "))
FORMULA_STARTS: Final = ("=", "+", "-", "@")


def normalise_notes(value: str) -> str:
    """Each CR, LF and tab becomes one space (CR LF becomes two)."""
    if "\r" in value or "\n" in value or "\t" in value:
        return value.translate(_NOTES_BREAKS)
    return value


def check_notes(notes: str) -> Finding | None:
    if len(notes) > NOTES_MAX_CHARS or _CONTROL_RE.search(notes):
        return FINDING[Code.NOTES_01]
    if notes.startswith(FORMULA_STARTS):
        return FINDING[Code.NOTES_02]
    return None
