"""One row through every rule: the cell rules in template order, then the row-level rules.

This is the hot path (a million rows a file), so `RowValidator.validate` is written out column
by column, builds objects only for problems and valid rows, and leaves cross-row work
(`DUP_01`) to `InFileDuplicates` or to the database.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final, NamedTuple, TypeVar

from services.core.scheme.codes import MESSAGES, SEVERITY, Code, Severity
from services.core.scheme.columns import COLUMNS, Column, HeaderMap
from services.core.scheme.records import Record
from services.core.scheme.reference import Course, ReferenceData
from services.core.scheme.rules import (
    FINDING,
    Finding,
    check_achievement_date,
    check_age,
    check_citb_id,
    check_course_code,
    check_date_of_birth,
    check_levy_number,
    check_name,
    check_ni_number,
    check_notes,
    check_provider_reference,
    check_uln,
    normalise_course_code,
    normalise_notes,
)
from services.core.scheme.text import (
    WHITE_SPACE,
    clean_cell,
    normalise_levy_number,
    remove_white_space,
)


@dataclass(frozen=True, slots=True)
class Issue:
    row: int
    column: Column | None  # None for the row-level codes
    code: Code
    severity: Severity
    message: str


class Achievement(NamedTuple):
    """The normalised values of a valid row.

    A named tuple rather than a frozen dataclass: it is built once per valid row (a frozen
    dataclass's `__init__` costs about three times as much), and it is a ready COPY record.
    """

    provider_reference: str | None
    course_code: str
    achievement_date: date
    forename: str
    surname: str
    date_of_birth: date
    uln: str | None
    ni_number: str | None
    citb_individual_id: str | None
    levy_number: str | None
    notes: str | None
    grant_eligible: bool  # levy number valid, registered and grant-eligible


# (course code, ISO achievement date, identifier kind, normalised identifier).
DuplicateKey = tuple[str, str, str, str]

# Identifier kinds in duplicate keys: the Achievement field (and database column) names.
ULN_KIND: Final = "uln"
NI_NUMBER_KIND: Final = "ni_number"
CITB_ID_KIND: Final = "citb_individual_id"


def duplicate_key_text(key: DuplicateKey) -> str:
    """The key as one string, `COURSE|DATE|KIND|ID` (no part can hold a `|`)."""
    return "|".join(key)


class RowResult(NamedTuple):
    """The outcome of one non-blank row. Immutable and slotted (a named tuple, for the same
    per-row cost reason as `Achievement`)."""

    row_number: int
    issues: tuple[Issue, ...]  # in template column order, row-level codes last
    achievement: Achievement | None  # present only when the row is valid
    # One key per identifier whose cell, course code and date are all valid (DUP_01, DUP_02).
    duplicate_keys: tuple[DuplicateKey, ...]

    @property
    def is_valid(self) -> bool:
        """No error (warnings allowed)."""
        return not any(issue.severity is Severity.ERROR for issue in self.issues)

    @property
    def has_warning(self) -> bool:
        return any(issue.severity is Severity.WARNING for issue in self.issues)

    def with_row_issue(self, issue: Issue) -> RowResult:
        """Adds a row-level issue (DUP_01, DUP_02); an error makes the row invalid."""
        achievement = None if issue.severity is Severity.ERROR else self.achievement
        return self._replace(issues=(*self.issues, issue), achievement=achievement)


def duplicate_issue(row_number: int, code: Code) -> Issue:
    """The DUP_01 or DUP_02 issue, whichever stage (memory or database) found the duplicate."""
    if code not in (Code.DUP_01, Code.DUP_02):
        raise ValueError(f"{code} is not a duplicate code")
    return Issue(row_number, None, code, SEVERITY[code], MESSAGES[code])


_TEMPLATE_COLUMNS: Final = tuple(spec.column for spec in COLUMNS)
_COURSE_04: Final = FINDING[Code.COURSE_04]  # as `rules.check_course_approval`, inlined
_ID_01: Final = FINDING[Code.ID_01]
_ROW_01: Final = FINDING[Code.ROW_01]
# Per-validator caches of the rules that depend only on the cell text: a file repeats a few
# course codes, dates, names, levy numbers and notes many times. Cleared when full.
_CACHE_ENTRIES: Final = 1 << 15

_T = TypeVar("_T")


def _remember(cache: dict[str, _T], key: str, value: _T) -> _T:
    if len(cache) >= _CACHE_ENTRIES:
        cache.clear()
    cache[key] = value
    return value


class RowValidator:
    """Validates the records of one file against one upload date and one reference snapshot."""

    def __init__(self, header_map: HeaderMap, today: date, reference: ReferenceData) -> None:
        self._indices = header_map.indices
        self._width = header_map.width
        self._cells_needed = max(header_map.indices) + 1
        self._pick: Callable[[Sequence[str]], tuple[str, ...]] = operator.itemgetter(
            *header_map.indices
        )
        self._today = today
        self._reference = reference
        self._courses: dict[str, tuple[str, Course | None, Finding | None]] = {}
        self._achievement_dates: dict[str, tuple[date | None, str, Finding | None]] = {}
        self._birth_dates: dict[str, tuple[date | None, Finding | None]] = {}
        self._names: dict[str, bool] = {}
        self._levy_numbers: dict[str, tuple[str, bool, Finding | None]] = {}
        self._notes: dict[str, tuple[str, Finding | None]] = {}

    def validate(self, record: Record) -> RowResult | None:
        """The row's result, or None for a blank row (every cell empty after trimming)."""
        row, cells = record
        count = len(cells)
        if count >= self._cells_needed:
            raw = self._pick(cells)
        else:  # a short record is padded with empty cells
            raw = tuple(cells[index] if index < count else "" for index in self._indices)
        values = [cell.strip(WHITE_SPACE) for cell in raw]
        has_extra = count > self._width and any(
            cell.strip(WHITE_SPACE) for cell in cells[self._width :]
        )
        joined = "".join(values)
        if not joined and not has_extra:
            return None  # blank
        if '="' in joined:  # rare: unwrap spreadsheet text formulas, in any column
            values = [clean_cell(value) for value in values]
        (
            ref,
            course_text,
            achieved_text,
            forename,
            surname,
            birth_text,
            uln,
            nino,
            citb,
            levy_text,
            notes,
        ) = values

        # A: ProviderReference.
        ref_finding = check_provider_reference(ref) if ref else None
        # B: CourseCode, COURSE_01..03.
        course_entry = self._courses.get(course_text)
        if course_entry is None:
            code = normalise_course_code(course_text)
            course_entry = _remember(
                self._courses, course_text, (code, *check_course_code(code, self._reference))
            )
        course_code, course, course_finding = course_entry
        # C: AchievementDate.
        achieved_entry = self._achievement_dates.get(achieved_text)
        if achieved_entry is None:
            day, finding = check_achievement_date(achieved_text, self._today)
            iso_date = day.isoformat() if day is not None else ""
            achieved_entry = _remember(
                self._achievement_dates, achieved_text, (day, iso_date, finding)
            )
        achieved, iso_date, achieved_finding = achieved_entry
        # B again: COURSE_04 needs a valid achievement date.
        if course is not None and achieved is not None and not course.approved_on(achieved):
            course_finding = _COURSE_04
        # D, E: names.
        fore_ok = self._names.get(forename)
        if fore_ok is None:
            fore_ok = _remember(self._names, forename, check_name(forename, Code.NAME_01) is None)
        sur_ok = self._names.get(surname)
        if sur_ok is None:
            sur_ok = _remember(self._names, surname, check_name(surname, Code.NAME_02) is None)
        # F: DateOfBirth; DOB_02 needs both dates valid.
        birth_entry = self._birth_dates.get(birth_text)
        if birth_entry is None:
            birth_entry = _remember(self._birth_dates, birth_text, check_date_of_birth(birth_text))
        born, birth_finding = birth_entry
        if born is not None and achieved is not None:
            birth_finding = check_age(born, achieved)
        # G, H, I: identifiers; every one given is validated.
        uln_finding = nino_finding = citb_finding = None
        if uln:
            uln = remove_white_space(uln)
            uln_finding = check_uln(uln)
        if nino:
            nino = remove_white_space(nino).upper()
            nino_finding = check_ni_number(nino)
        if citb:
            citb = remove_white_space(citb).upper()
            citb_finding = check_citb_id(citb)
        # J: EmployerLevyNumber.
        levy_entry = self._levy_numbers.get(levy_text)
        if levy_entry is None:
            levy_number = normalise_levy_number(levy_text)
            employer, levy_finding = check_levy_number(levy_number, self._reference)
            levy_entry = _remember(
                self._levy_numbers, levy_text, (levy_number, employer is not None, levy_finding)
            )
        levy_number, grant_eligible, levy_finding = levy_entry
        # K: Notes.
        notes_finding = None
        if notes:
            notes_entry = self._notes.get(notes)
            if notes_entry is None:
                normalised = normalise_notes(notes)
                notes_entry = _remember(self._notes, notes, (normalised, check_notes(normalised)))
            notes, notes_finding = notes_entry

        issues: tuple[Issue, ...] = ()
        has_error = False
        if (
            ref_finding
            or course_finding
            or achieved_finding
            or not fore_ok
            or not sur_ok
            or birth_finding
            or uln_finding
            or nino_finding
            or citb_finding
            or levy_finding
            or notes_finding
            or not (uln or nino or citb)
            or has_extra
        ):
            issues = self._issues(
                row,
                (
                    ref_finding,
                    course_finding,
                    achieved_finding,
                    None if fore_ok else FINDING[Code.NAME_01],
                    None if sur_ok else FINDING[Code.NAME_02],
                    birth_finding,
                    uln_finding,
                    nino_finding,
                    citb_finding,
                    levy_finding,
                    notes_finding,
                ),
                no_identifier=not (uln or nino or citb),
                has_extra=has_extra,
            )
            has_error = any(issue.severity is Severity.ERROR for issue in issues)

        keys: tuple[DuplicateKey, ...] = ()
        if course is not None and course_finding is None and achieved is not None:
            if uln and uln_finding is None:
                keys = ((course_code, iso_date, ULN_KIND, uln),)
            if nino and nino_finding is None:
                keys += ((course_code, iso_date, NI_NUMBER_KIND, nino),)
            if citb and citb_finding is None:
                keys += ((course_code, iso_date, CITB_ID_KIND, citb),)

        if has_error or achieved is None or born is None:  # no error implies both dates valid
            return RowResult(row, issues, None, keys)
        achievement = Achievement(
            ref or None,
            course_code,
            achieved,
            forename,
            surname,
            born,
            uln or None,
            nino or None,
            citb or None,
            levy_number or None,
            notes or None,
            grant_eligible,
        )
        return RowResult(row, issues, achievement, keys)

    @staticmethod
    def _issues(
        row: int,
        findings: tuple[Finding | None, ...],
        *,
        no_identifier: bool,
        has_extra: bool,
    ) -> tuple[Issue, ...]:
        issues = [
            Issue(row, column, finding.code, finding.severity, finding.message)
            for column, finding in zip(_TEMPLATE_COLUMNS, findings, strict=True)
            if finding is not None
        ]
        if no_identifier:
            issues.append(Issue(row, None, Code.ID_01, _ID_01.severity, _ID_01.message))
        if has_extra:
            issues.append(Issue(row, None, Code.ROW_01, _ROW_01.severity, _ROW_01.message))
        return tuple(issues)


class InFileDuplicates:
    """DUP_01 in memory: the first occurrence wins, even when that row has other errors.

    Identifiers are grouped by (course code, date, kind), so a key costs one set entry and its
    identifier string (about 90 bytes; a million-row file about 90 MB). For files too big for
    that, the pipeline runs the same rule in PostgreSQL over `RowResult.duplicate_keys` and
    reports it with `duplicate_issue`.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str, str], set[str]] = {}

    def apply(self, result: RowResult) -> RowResult:
        if not result.duplicate_keys:
            return result
        duplicate = False
        for course_code, iso_date, kind, identifier in result.duplicate_keys:
            group = (course_code, iso_date, kind)
            seen = self._seen.get(group)
            if seen is None:
                seen = self._seen[group] = set()
            if identifier in seen:
                duplicate = True
            else:
                seen.add(identifier)  # a duplicate row's other identifiers count later too
        if duplicate:
            return result.with_row_issue(duplicate_issue(result.row_number, Code.DUP_01))
        return result
