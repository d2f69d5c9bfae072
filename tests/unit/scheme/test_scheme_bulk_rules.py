"""The bulk pass (`bulk_rules`): it may only say "valid", and must say it only when the row
validator does, with the same values, warnings and duplicate keys.

Hand-written cases per rule first (expected values written out), then the two passes against
`RowValidator`: a Hypothesis test around every rule's edge (more examples in tier 2), and a
differential run over 1,000,000 generated rows (tier 2).
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scheme_builders import (
    HEADERS,
    UPLOAD_DATE,
    VALID,
    VALID_ULNS,
    cells,
    csv_text,
    template_header_map,
    write,
)

import services.core.scheme.bulk_rules as bulk_rules
from services.core.scheme.bulk_rules import (
    ISSUED_NINO_PREFIXES,
    KEY_COLUMNS,
    NAME_CHARACTERS,
    VALID_COLUMNS,
    BulkResult,
    BulkValidator,
    DateReader,
    InFileDuplicateKeys,
    validate_chunk,
    validate_records,
)
from services.core.scheme.check import check_file
from services.core.scheme.codes import Code
from services.core.scheme.columns import HeaderMap, match_header
from services.core.scheme.record_scanner import SegmentBytes, segment_records
from services.core.scheme.records import Record
from services.core.scheme.reference import bundled_reference
from services.core.scheme.rules import CONTROL_CLASS, check_name, check_ni_number, parse_date
from services.core.scheme.text import WHITE_SPACE
from services.core.scheme.validation import (
    Achievement,
    InFileDuplicates,
    RowResult,
    RowValidator,
)

REFERENCE = bundled_reference()


def bulk(
    *rows: list[str], today: date = UPLOAD_DATE, header: HeaderMap | None = None
) -> BulkResult:
    records = [(number, row) for number, row in enumerate(rows, start=2)]
    return validate_records(records, header or template_header_map(), today, REFERENCE)


def proven(row: list[str], today: date = UPLOAD_DATE) -> RowResult | None:
    """The row's result when the bulk pass proves it valid, else None."""
    results = bulk(row, today=today).valid_results()
    return results[0] if results else None


def warnings_of(row: list[str]) -> list[str]:
    result = proven(row)
    assert result is not None
    return [issue.code.value for issue in result.issues]


def exact_results(records: Sequence[Record], header: HeaderMap, today: date) -> list[RowResult]:
    validator = RowValidator(header, today, REFERENCE)
    return [result for record in records if (result := validator.validate(record)) is not None]


class TestValidRows:
    def test_a_clean_row_is_proven_with_its_values(self) -> None:
        result = proven(cells())
        assert result is not None
        assert result.issues == ()
        assert result.achievement == Achievement(
            provider_reference="REF-0001",
            course_code="SD-WAH-101",
            achievement_date=date(2026, 11, 12),
            forename="Amelia",
            surname="Hartley",
            date_of_birth=date(1990, 3, 14),
            uln="1000000043",
            ni_number=None,
            citb_individual_id=None,
            levy_number="79049946",
            notes=None,
            grant_eligible=True,
        )
        assert result.duplicate_keys == (("SD-WAH-101", "2026-11-12", "uln", "1000000043"),)

    def test_every_cell_is_read_as_the_scheme_reads_it(self) -> None:
        result = proven(
            cells(
                ProviderReference="\u3000 REF-9 ",
                CourseCode=" sd-wah-101\t",
                AchievementDate="\xa012/11/2026",
                LearnerForename=" Zoë ",
                LearnerSurname='="O\'Neill"',
                DateOfBirth="1990-03-14\u2029",
                ULN="10000\u00a000043",
                NINumber="ab 12 34 56 c",
                CITBIndividualId='=" abc12345 "',
                EmployerLevyNumber="m128-6101",
                Notes="line one\r\nline\ttwo",
            )
        )
        assert result is not None
        assert result.issues == ()
        assert result.achievement == Achievement(
            provider_reference="REF-9",
            course_code="SD-WAH-101",
            achievement_date=date(2026, 11, 12),
            forename="Zoë",
            surname="O'Neill",
            date_of_birth=date(1990, 3, 14),
            uln="1000000043",
            ni_number="AB123456C",
            citb_individual_id="ABC12345",
            levy_number="M1286101",
            notes="line one  line two",
            grant_eligible=True,
        )
        assert result.duplicate_keys == (
            ("SD-WAH-101", "2026-11-12", "uln", "1000000043"),
            ("SD-WAH-101", "2026-11-12", "ni_number", "AB123456C"),
            ("SD-WAH-101", "2026-11-12", "citb_individual_id", "ABC12345"),
        )

    def test_the_valid_frame_has_its_columns_and_types(self) -> None:
        valid = bulk(cells(), cells(ULN=VALID_ULNS[1], Notes="=x", EmployerLevyNumber="")).valid
        assert valid.columns == list(VALID_COLUMNS)
        assert valid["achievement_date"].dtype == pl.Date
        assert valid["warnings"].to_list() == [[], ["LEVY_03", "NOTES_02"]]
        assert valid[KEY_COLUMNS[1]].to_list() == [None, None]
        assert valid["levy_number"].to_list() == ["79049946", None]

    def test_values_false_leaves_the_achievement_values_out(self) -> None:
        validator = BulkValidator(template_header_map(), UPLOAD_DATE, REFERENCE, values=False)
        valid = validator.bulk([(2, cells())]).valid
        assert valid.columns == ["row_number", "warnings", *KEY_COLUMNS]


class TestWarnings:
    def test_ten_days_before_the_upload_is_not_stale_eleven_is(self) -> None:
        assert warnings_of(cells(AchievementDate="10/11/2026")) == []
        assert warnings_of(cells(AchievementDate="09/11/2026")) == ["ACHDATE_03"]

    def test_levy_warnings(self) -> None:
        assert warnings_of(cells(EmployerLevyNumber="")) == ["LEVY_03"]
        assert warnings_of(cells(EmployerLevyNumber=" - ")) == ["LEVY_03"]  # empty once normal
        assert warnings_of(cells(EmployerLevyNumber="G719507518")) == ["LEVY_02"]  # ineligible
        assert warnings_of(cells(EmployerLevyNumber="A1234567")) == ["LEVY_02"]  # unregistered

    def test_grant_eligible_only_for_a_registered_eligible_employer(self) -> None:
        for levy, eligible in (("79049946", True), ("G719507518", False), ("", False)):
            result = proven(cells(EmployerLevyNumber=levy))
            assert result is not None
            assert result.achievement is not None
            assert result.achievement.grant_eligible is eligible

    @pytest.mark.parametrize("start", ["=", "+", "-", "@"])
    def test_notes_that_start_like_a_formula(self, start: str) -> None:
        assert warnings_of(cells(Notes=f"{start}SUM(A1)")) == ["NOTES_02"]

    def test_warnings_come_in_template_column_order(self) -> None:
        row = cells(AchievementDate="01/01/2026", EmployerLevyNumber="", Notes="@x")
        assert warnings_of(row) == ["ACHDATE_03", "LEVY_03", "NOTES_02"]


class TestNotProven:
    """Rows the bulk pass leaves to the row validator: errors, and values it does not judge."""

    @pytest.mark.parametrize(
        "changes",
        [
            {"ProviderReference": "R" * 51},
            {"ProviderReference": "REF\x01"},
            {"ProviderReference": "REF\x85X"},  # NEL: white space, but a control inside
            {"CourseCode": ""},
            {"CourseCode": "S"},
            {"CourseCode": "SD_WAH_101"},
            {"CourseCode": "SD-XXX-999"},
            {"CourseCode": "SD-MHA-106", "AchievementDate": "2024-04-01"},  # approval ended
            {"CourseCode": "SD-EFA-108"},  # approved only from 2027
            {"AchievementDate": "21/11/2026"},  # after the upload date
            {"AchievementDate": "31/04/2026"},
            {"AchievementDate": "29/02/2026"},
            {"AchievementDate": "2026-1-05"},
            {"AchievementDate": "12/11/26"},
            {"AchievementDate": "45306"},
            {"AchievementDate": "１２/１１/２０２６"},
            {"LearnerForename": ""},
            {"LearnerForename": "A" * 101},
            {"LearnerForename": "Ann3"},
            {"LearnerForename": "A|B"},
            {"LearnerForename": 'A"B'},
            {"LearnerSurname": "A\x7fB"},
            {"DateOfBirth": "16/11/2011", "AchievementDate": "15/11/2026"},  # 14 years old
            {"DateOfBirth": "15/11/1911", "AchievementDate": "15/11/2026"},  # 115
            {"DateOfBirth": "2026-11-16", "AchievementDate": "15/11/2026"},  # born after
            {"DateOfBirth": "0000-01-01"},
            {"ULN": "1234567890"},  # check digit
            {"ULN": "9999999999"},
            {"ULN": "0123456789"},
            {"ULN": "1.23457E+09"},
            {"ULN": "", "NINumber": "", "CITBIndividualId": ""},
            {"NINumber": "QQ123456C"},
            {"NINumber": "OO123456A"},
            {"NINumber": "AB123456E"},
            {"NINumber": "AO123456A"},
            {"CITBIndividualId": "ABCD"},
            {"CITBIndividualId": "A" * 13},
            {"EmployerLevyNumber": "A123456"},
            {"EmployerLevyNumber": "1234567890"},
            {"Notes": "x" * 256},
            {"Notes": "a\x0bb"},
        ],
    )
    def test_an_invalid_row_is_never_proven(self, changes: dict[str, str]) -> None:
        row = cells(**changes)
        assert exact_results([(2, row)], template_header_map(), UPLOAD_DATE)[0].achievement is None
        result = bulk(row)
        assert result.rows_valid == 0
        assert result.exact == [(2, row)]

    @pytest.mark.parametrize(
        "changes",
        [
            {"LearnerForename": "Ａnna"},  # fullwidth: a letter, outside the alphabets judged
            {"LearnerForename": "李"},
            {"LearnerSurname": "A\u202eB"},
            {"CourseCode": "\u017fd-wah-101"},  # Python upper-cases the long s to S
            {"NINumber": "ſb123456c"},
            {"CITBIndividualId": "ß1234"},  # upper-cases to SS1234
        ],
    )
    def test_values_outside_what_the_bulk_pass_judges_go_to_the_exact_path(
        self, changes: dict[str, str]
    ) -> None:
        row = cells(**changes)
        result = bulk(row)
        assert result.rows_valid == 0
        assert result.exact == [(2, row)]
        # ... and the two passes together still give the row validator's result.
        combined = validate_chunk([(2, row)], template_header_map(), UPLOAD_DATE, REFERENCE)
        assert combined == exact_results([(2, row)], template_header_map(), UPLOAD_DATE)

    def test_dates_at_the_edges(self) -> None:
        assert proven(cells(AchievementDate="20/11/2026")) is not None  # the upload date
        assert proven(cells(AchievementDate="2026-11-20")) is not None
        assert proven(cells(AchievementDate="1/3/2026", CourseCode="SD-WAH-101")) is not None
        result = proven(cells(AchievementDate="1/3/2026"))
        assert result is not None
        assert result.achievement is not None
        assert result.achievement.achievement_date == date(2026, 3, 1)  # day first
        assert proven(cells(DateOfBirth="29/02/2008", AchievementDate="01/03/2023")) is not None
        assert proven(cells(DateOfBirth="29/02/2008", AchievementDate="28/02/2023")) is None
        assert proven(cells(DateOfBirth="15/11/2011", AchievementDate="15/11/2026")) is not None
        assert proven(cells(DateOfBirth="16/11/1911", AchievementDate="15/11/2026")) is not None
        result = proven(cells(CourseCode="SD-MHA-106", AchievementDate="2024-03-31"))
        assert result is not None  # the last day of the approval period
        assert [issue.code for issue in result.issues] == [Code.ACHDATE_03]

    def test_uln_check_digits_from_the_scheme(self) -> None:
        for uln in ("1000000043", "1234567899", "5555555554", "1111111110"):
            assert proven(cells(ULN=uln)) is not None

    def test_every_two_letter_prefix_as_the_row_validator(self) -> None:
        letters = [chr(point) for point in range(ord("A"), ord("Z") + 1)]
        rows = []
        for prefix in map("".join, itertools.product(letters, repeat=2)):
            nino = f"{prefix}123456C"
            assert (prefix in ISSUED_NINO_PREFIXES) == (check_ni_number(nino) is None)
            rows.append(cells(ULN="", NINumber=nino, LearnerSurname=prefix.lower()))
        issued = {
            row.achievement.surname.upper()
            for row in bulk(*rows).valid_results()
            if row.achievement
        }
        assert issued == set(ISSUED_NINO_PREFIXES)
        assert "AB" in issued
        assert not {"QQ", "OO", "FY", "BG", "AO", "DA"} & issued

    def test_the_name_characters_are_each_accepted_by_the_row_validator(self) -> None:
        assert all(check_name(character, Code.NAME_01) is None for character in NAME_CHARACTERS)
        assert not set('0123456789|"\u202e\u2066') & NAME_CHARACTERS

    @given(st.text(alphabet=sorted(NAME_CHARACTERS), min_size=1, max_size=100))
    @settings(max_examples=300, deadline=None)
    def test_a_name_of_those_characters_is_accepted_too(self, name: str) -> None:
        # The premise of the name rule in bulk: the row validator forbids single characters.
        assert check_name(name, Code.NAME_01) is None

    @pytest.mark.parametrize("tail", ["000000A", "999999D", "123456B", "314159C"])
    def test_the_ni_number_rule_looks_at_the_prefix_alone(self, tail: str) -> None:
        # The premise of deriving the issued prefixes from one sample tail.
        letters = [chr(point) for point in range(ord("A"), ord("Z") + 1)]
        accepted = {
            prefix
            for prefix in map("".join, itertools.product(letters, repeat=2))
            if check_ni_number(prefix + tail) is None
        }
        assert accepted == set(ISSUED_NINO_PREFIXES)

    def test_every_control_character_is_one_to_polars_too(self) -> None:
        # CONTROL_CLASS is handed to Polars' regex engine as it is: both must read it alike.
        characters = [chr(point) for point in range(0x2100)]
        series = pl.Series(characters, dtype=pl.String)
        polars_says = series.str.contains(f"[{CONTROL_CLASS}]").to_list()
        python_says = [re.search(f"[{CONTROL_CLASS}]", c) is not None for c in characters]
        assert polars_says == python_says


class TestRecords:
    def test_blank_rows_are_dropped_and_counted(self) -> None:
        result = bulk(cells(), [""] * 11, [" ", "\u3000"], [], cells(ULN=VALID_ULNS[1]))
        assert result.rows_blank == 3
        assert result.records == 5
        assert result.exact == []
        assert result.valid["row_number"].to_list() == [2, 6]

    def test_a_wrapped_empty_cell_is_not_a_blank_row(self) -> None:
        row = ['=""'] + [""] * 10
        result = bulk(row)
        assert result.rows_blank == 0
        assert result.exact == [(2, row)]

    def test_a_short_record_is_padded(self) -> None:
        row = cells()[:10]  # no Notes cell at all
        result = proven(row)
        assert result is not None
        assert result.achievement is not None
        assert result.achievement.notes is None

    def test_extra_cells_empty_or_not(self) -> None:
        assert proven([*cells(), "", " "]) is not None
        row = [*cells(), "", "extra"]
        result = bulk(row)
        assert result.rows_valid == 0
        assert result.exact == [(2, row)]  # ROW_01: the record as it came

    def test_a_nul_in_a_cell_goes_to_the_exact_path_as_it_came(self) -> None:
        row = cells(Notes="a\x00b")
        assert bulk(row).exact == [(2, row)]

    def test_columns_in_another_order(self) -> None:
        order = list(reversed(HEADERS))
        header = match_header(order)
        assert isinstance(header, HeaderMap)
        row = [VALID[name] for name in order]
        result = bulk(row, header=header).valid_results()
        assert result == exact_results([(2, row)], header, UPLOAD_DATE)
        assert len(result) == 1

    def test_cells_of_a_row_for_error_reports(self) -> None:
        result = bulk(cells(), cells(ULN="1234567890"))
        assert result.cells_of([3, 9]) == {3: cells(ULN="1234567890")}
        assert result.cells_of([]) == {}

    def test_an_empty_chunk(self) -> None:
        result = bulk()
        assert (result.records, result.rows_valid, result.exact) == (0, 0, [])

    def test_chunks_take_bounded_slices(self) -> None:
        validator = BulkValidator(template_header_map(), UPLOAD_DATE, REFERENCE)
        records = [(row, cells(ULN=VALID_ULNS[row % 8])) for row in range(2, 27)]
        sizes = [result.records for result in validator.chunks(iter(records), size=10)]
        assert sizes == [10, 10, 5]


class TestInFileDuplicates:
    def test_the_same_rule_as_in_file_duplicates_across_chunks_and_passes(self) -> None:
        rows = [
            cells(ULN=VALID_ULNS[0], LearnerForename=""),  # invalid, but its key counts
            cells(ULN=VALID_ULNS[0]),  # DUP_01 (bulk-proven row)
            cells(ULN=VALID_ULNS[1], NINumber="AB123456C"),
            cells(ULN=VALID_ULNS[2], NINumber="ab123456c"),  # DUP_01 by its NI number
            cells(ULN=VALID_ULNS[2]),  # DUP_01: the duplicate's other key counted too
            cells(ULN=VALID_ULNS[3], AchievementDate="13/11/2026"),  # another date: new
            cells(ULN=VALID_ULNS[3], AchievementDate="13/11/2026", LearnerSurname="1"),
        ]
        records = [(number, row) for number, row in enumerate(rows, start=2)]
        header = template_header_map()
        expected = _old_rule(records, header)
        for size in (1, 2, 3, 7):
            assert _new_rule(records, header, size) == expected
        assert {row for row, duplicate in expected.items() if duplicate} == {3, 5, 6, 8}


def _old_rule(records: Sequence[Record], header: HeaderMap) -> dict[int, bool]:
    duplicates = InFileDuplicates()
    return {
        result.row_number: Code.DUP_01 in [issue.code for issue in duplicates.apply(result).issues]
        for result in exact_results(records, header, UPLOAD_DATE)
    }


def _new_rule(records: Sequence[Record], header: HeaderMap, size: int) -> dict[int, bool]:
    validator = BulkValidator(header, UPLOAD_DATE, REFERENCE)
    in_file = InFileDuplicateKeys()
    found: dict[int, bool] = {}
    for result in validator.chunks(records, size=size):
        exact = validator.exact(result.exact)
        repeated = in_file.find(result, exact)
        found.update(dict.fromkeys(result.valid["row_number"].to_list(), False))
        found.update((row.row_number, False) for row in exact)
        found.update(dict.fromkeys(repeated, True))
    return dict(sorted(found.items()))


# --- Rows around every rule's edge -----------------------------------------------------------

_WS = tuple(WHITE_SPACE)
_COURSES = tuple(course.code for course in REFERENCE.courses())
_LEVY_NUMBERS = tuple(employer.levy_number for employer in REFERENCE.employers())


def _date_texts(day: date) -> list[str]:
    return [
        f"{day:%d/%m/%Y}",
        f"{day.day}/{day.month}/{day.year:04d}",
        f"{day.day:02d}/{day.month}/{day.year:04d}",
        day.isoformat(),
    ]


def _achievement_dates(today: date) -> list[str]:
    texts = []
    for offset in (-1, 0, 1, 9, 10, 11, 12, 400, 1000, 3000):
        texts += _date_texts(today - timedelta(days=offset))
    return [*texts, "29/02/2024", "29/02/2023", "31/04/2026", "2026-1-05", "0/1/2026", "45306"]


def _births(today: date) -> list[str]:
    texts = []
    for years in (14, 15, 16, 114, 115, 50):
        for days in (-1, 0, 1):
            try:
                born = today.replace(year=today.year - years) + timedelta(days=days)
            except ValueError:  # 29 February
                born = date(today.year - years, 3, 1) + timedelta(days=days)
            texts += _date_texts(born)
    return [*texts, "29/02/2008", "29/02/2007", "0000-01-01", "1/1/0001", "12/12/9999"]


_ULNS = (*VALID_ULNS, "1234567890", "9999999999", "0123456789", "123456789", "12345678901")
_NINOS = ("AB123456C", "QQ123456C", "OO123456A", "AB123456E", "AO123456A", "GB123456A", "TN1")
_CITBS = ("ABC12", "ABCD", "A" * 12, "A" * 13, "12E4567", "ß1234")
_NAMES = ("Amelia", "Zoë", "O'Neill", "Anne-Marie", "A" * 100, "A" * 101, "Ann3", "A|B")
_UNUSUAL = ("\x00", "\x01", "\x1c", "\x7f", "\x85", "\u0663", "\u202e", "\u2066", "Ａ", "ı", "ſ")
_UNUSUAL += ("ß", "李", "😀", '"', "|", "=", '="', "\u200b", "\ufeff", "\r", "\n", "\t", "-", "/")
# What makes a spreadsheet quote a cell, alone and together.
_UNUSUAL += (",", ";", '""', "\r\n", ', "x"', '"; ', '"\n"')


@functools.cache
def _typical_values(today: date) -> dict[str, list[str]]:
    """Valid values of each column, as most rows of a file hold them."""
    recent = [f"{today - timedelta(days=days):%d/%m/%Y}" for days in range(10)]
    births = [f"{date(1970, 1, 1) + timedelta(days=days * 97):%d/%m/%Y}" for days in range(80)]
    return {
        "ProviderReference": ["REF-1", "", "A-9"],
        "CourseCode": ["SD-WAH-101", "SD-FAW-107", "CPCS-A09T"],
        "AchievementDate": recent,
        "LearnerForename": ["Amelia", "Zoë", "Seán"],
        "LearnerSurname": ["Hartley", "O'Neill", "Anne-Marie", "Smith, Jr"],
        "DateOfBirth": births,
        "ULN": list(VALID_ULNS),
        "NINumber": ["", "", "AB123456C"],
        "CITBIndividualId": ["", "", "ABC12"],
        "EmployerLevyNumber": [e.levy_number for e in REFERENCE.employers() if e.grant_eligible],
        "Notes": ["", "", "ok", "PO 4471, cohort B", 'said "thanks"', "Passed\r\nresit; room 4"],
    }


@functools.cache
def _column_values(today: date) -> dict[str, list[str]]:
    """Values around the edges of each column's rules, for one upload date."""
    return {
        "ProviderReference": ["", "REF-1", "R" * 50, "R" * 51, "=1", "a\x85b"],
        "CourseCode": [*_COURSES, "sd-wah-101", "SD", "S", "A" * 21, "-SD", "ſd-wah-101"],
        "AchievementDate": _achievement_dates(today),
        "LearnerForename": list(_NAMES),
        "LearnerSurname": list(_NAMES),
        "DateOfBirth": _births(today),
        "ULN": ["", *_ULNS, "1.23457E+09", "10000 00043"],
        "NINumber": ["", *_NINOS, "ab 12 34 56 c", "ſb123456c"],
        "CITBIndividualId": ["", *_CITBS],
        "EmployerLevyNumber": ["", *_LEVY_NUMBERS[:30], "m128-6101", "A123456", "-", "1.2E+9"],
        "Notes": ["", "ok", "=SUM()", "+1", "-x", "@x", "a\r\nb", "x" * 255, "x" * 256, '"a, b"'],
    }


def _damaged(value: str, rng: random.Random) -> str:
    """A value as a spreadsheet or a person may have left it (or left it alone)."""
    kind = rng.randrange(12)
    if kind == 0:
        return rng.choice(_WS) + value + rng.choice(_WS)
    if kind == 1:
        return f'="{value}"'
    if kind == 2:
        return value.lower() if rng.random() < 0.5 else value.upper()
    if kind == 3 and value:
        at = rng.randrange(len(value) + 1)
        return value[:at] + rng.choice((*_WS, *_UNUSUAL)) + value[at:]
    if kind == 4 and value:
        at = rng.randrange(len(value))
        return value[:at] + rng.choice(_UNUSUAL) + value[at + 1 :]
    if kind == 5:
        return ""
    return value


@dataclass(frozen=True)
class _Chunk:
    header: HeaderMap
    today: date
    records: list[Record]


def _chunk(rng: random.Random, size: int, *, shuffle_header: bool, today: date) -> _Chunk:
    columns, typical = _column_values(today), _typical_values(today)
    order = list(HEADERS)
    if shuffle_header:
        rng.shuffle(order)
    header = match_header(order)
    assert isinstance(header, HeaderMap)
    records: list[Record] = []
    for number in range(2, size + 2):
        shape = rng.randrange(40)
        if shape == 0:
            records.append((number, [rng.choice(("", " ", "\u3000"))] * rng.randrange(13)))
            continue
        edges = rng.random() < 0.3  # a row near the edges, else a typical one
        row = {
            name: _damaged(rng.choice(columns[name]), rng)
            if edges and rng.random() < 0.3
            else rng.choice(typical[name])
            for name in HEADERS
        }
        record = [row[name] for name in order]
        if shape == 1:
            record = record[: rng.randrange(len(record))]
        elif shape == 2:
            record += [rng.choice(("", " ", "x"))]
        records.append((number, record))
    return _Chunk(header, today, records)


def _assert_agrees(chunk: _Chunk, delimiter: str = ",") -> tuple[int, int]:
    """Asserts that the bulk pass agrees with the row validator on every row, given the records
    (`bulk`) and given them as a file's bytes with `delimiter` (`bulk_bytes`, cells quoted as
    spreadsheets quote them); returns how many rows the bulk pass proved valid and how many rows
    were valid."""
    counts = _assert_result_agrees(chunk, chunk.records, by_bytes=False)
    data = _file_bytes(chunk.records, delimiter)
    # The csv module's reading of those bytes is the reference: a file cannot hold a NUL, and
    # a record of one empty cell reads back as one.
    read = segment_records(data.decode(), delimiter, 2)
    _assert_result_agrees(chunk, read, by_bytes=True, data=data, delimiter=delimiter)
    return counts


def _file_bytes(records: Sequence[Record], delimiter: str) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    for _, cells_written in records:
        writer.writerow([cell.replace("\x00", "") for cell in cells_written])
    return out.getvalue().encode()


def _assert_result_agrees(
    chunk: _Chunk,
    records: Sequence[Record],
    *,
    by_bytes: bool,
    data: bytes = b"",
    delimiter: str = ",",
) -> tuple[int, int]:
    validator = RowValidator(chunk.header, chunk.today, REFERENCE)
    expected = {record[0]: validator.validate(record) for record in records}
    bulk_validator = BulkValidator(chunk.header, chunk.today, REFERENCE)
    if by_bytes:
        result = bulk_validator.bulk_bytes([SegmentBytes(data, 2)], delimiter)
    else:
        result = bulk_validator.bulk(records)
    assert result.records == len(records)
    proven_rows = result.valid_results()
    for row in proven_rows:
        # Valid, with the same warnings (issues), values and duplicate keys.
        assert row == expected[row.row_number], row.row_number
    exact_rows = {row for row, _ in result.exact}
    proven_numbers = {row.row_number for row in proven_rows}
    assert not exact_rows & proven_numbers
    for number, outcome in expected.items():
        if number not in exact_rows and number not in proven_numbers:
            assert outcome is None, number  # dropped as blank only when blank
    for number, cells_read in result.exact:
        # The record handed to the exact path reads as the original does.
        assert validator.validate((number, cells_read)) == expected[number]
    if not by_bytes:
        combined = bulk_validator.validate_chunk(records)
        assert combined == [outcome for outcome in expected.values() if outcome is not None]
    valid = sum(1 for outcome in expected.values() if outcome is not None and outcome.is_valid)
    return len(proven_rows), valid


_SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    size=st.integers(min_value=1, max_value=40),
    shuffle_header=st.booleans(),
    today_offset=st.sampled_from([0, 0, 0, 1, -1, 365, -3000]),
    delimiter=st.sampled_from([",", ";"]),
)
@settings(max_examples=500, **_SETTINGS)
def test_the_bulk_pass_agrees_with_the_row_validator(
    seed: int, size: int, shuffle_header: bool, today_offset: int, delimiter: str
) -> None:
    today = UPLOAD_DATE + timedelta(days=today_offset)
    chunk = _chunk(random.Random(seed), size, shuffle_header=shuffle_header, today=today)
    _assert_agrees(chunk, delimiter)


@pytest.mark.tier2
@pytest.mark.timeout(1800)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    size=st.integers(min_value=1, max_value=200),
    shuffle_header=st.booleans(),
    today_offset=st.integers(min_value=-4000, max_value=400),
    delimiter=st.sampled_from([",", ";"]),
)
@settings(max_examples=5_000, **_SETTINGS)
def test_the_bulk_pass_agrees_with_the_row_validator_at_length(
    seed: int, size: int, shuffle_header: bool, today_offset: int, delimiter: str
) -> None:
    today = UPLOAD_DATE + timedelta(days=today_offset)
    chunk = _chunk(random.Random(seed), size, shuffle_header=shuffle_header, today=today)
    _assert_agrees(chunk, delimiter)


@given(
    rows=st.lists(st.lists(st.text(max_size=12), min_size=0, max_size=13), min_size=1, max_size=10)
)
@settings(max_examples=200, **_SETTINGS)
def test_any_text_at_all(rows: list[list[str]]) -> None:
    """Arbitrary Unicode in every cell (surrogates excluded: no decoder yields them)."""
    records = [(number, row) for number, row in enumerate(rows, start=2)]
    _assert_agrees(_Chunk(template_header_map(), UPLOAD_DATE, records))


def test_a_lone_surrogate_goes_to_the_exact_path() -> None:
    row = cells(Notes="\ud800")
    result = bulk(row)
    assert result.exact == [(2, row)]


@pytest.mark.tier2
@pytest.mark.timeout(900)
def test_a_million_generated_rows_agree() -> None:
    rng = random.Random(20261120)
    proven_total = valid_total = 0
    for _ in range(50):
        chunk = _chunk(rng, 20_000, shuffle_header=rng.random() < 0.2, today=UPLOAD_DATE)
        proven_count, valid_count = _assert_agrees(chunk, rng.choice(",;"))
        proven_total += proven_count
        valid_total += valid_count
    # Sound by the assertions above; and useful: most valid rows are proven in bulk.
    assert proven_total > 0.8 * valid_total


# --- The offline check: the same report as the row validator alone ------------------------


def _reference_check(path: Path) -> tuple[int, int, int, list[tuple[int, str | None, str]]]:
    """The offline check's loop before the bulk pass: every row through the row validator,
    then `InFileDuplicates`."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    header = match_header(rows[0])
    assert isinstance(header, HeaderMap)
    validator = RowValidator(header, UPLOAD_DATE, REFERENCE)
    duplicates = InFileDuplicates()
    total = invalid = warned = 0
    issues: list[tuple[int, str | None, str]] = []
    for number, row in enumerate(rows[1:], start=2):
        result = validator.validate((number, row))
        if result is None:
            continue
        total += 1
        result = duplicates.apply(result)
        issues += [(issue.row, issue.column, issue.code.value) for issue in result.issues]
        if not result.is_valid:
            invalid += 1
        elif result.has_warning:
            warned += 1
    return total, invalid, warned, sorted(issues, key=lambda issue: issue[0])


@pytest.mark.parametrize("seed", range(4))
def test_check_file_gives_the_row_validators_report(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    rows: list[list[str]] = []
    columns = _column_values(UPLOAD_DATE)
    for _ in range(3000):
        row = cells(
            ULN=rng.choice(VALID_ULNS), AchievementDate=rng.choice(["12/11/2026", "1/11/2026"])
        )
        if rng.random() < 0.2:
            name = rng.choice(HEADERS)
            # (A NUL byte would make the whole file FILE_01.)
            damaged = _damaged(rng.choice(columns[name]), rng).replace("\x00", "")
            row[HEADERS.index(name)] = damaged
        rows.append(row)
    path = write(tmp_path, "mixed.csv", csv_text(rows))
    report = check_file(path, today=UPLOAD_DATE)
    total, invalid, warned, issues = _reference_check(path)
    assert (report.rows_total, report.rows_invalid, report.rows_warned) == (total, invalid, warned)
    assert [(issue.row, issue.column, issue.code.value) for issue in report.issues] == issues


def test_a_reference_that_cannot_list_itself_gets_the_row_validator(tmp_path: Path) -> None:
    class Lookups:
        def course(self, code: str) -> object:
            return REFERENCE.course(code)

        def employer(self, levy_number: str) -> object:
            return REFERENCE.employer(levy_number)

    path = write(tmp_path, "r.csv", csv_text([cells(), cells()]))
    report = check_file(path, today=UPLOAD_DATE, reference=Lookups())  # type: ignore[arg-type]
    assert [issue.code.value for issue in report.issues] == ["DUP_01"]


def test_the_full_pass_skipped_after_rows_it_could_not_prove() -> None:
    header = template_header_map()
    validator = BulkValidator(header, UPLOAD_DATE, REFERENCE)
    dirty_invalid = [
        (row, cells(LearnerForename=" Ann ", ULN="1234567890")) for row in range(2, 3002)
    ]
    validator.validate_chunk(dirty_invalid)  # the full pass proves none of these
    # Dirty but valid rows now reach the row validator directly: the same results.
    records = [
        (row, cells(LearnerForename=" Ann ", ULN=VALID_ULNS[row % 8])) for row in range(2, 12)
    ]
    bulk_result = validator.bulk(records)
    assert bulk_result.rows_valid == 0
    assert len(bulk_result.exact) == 10
    assert validator.validate_chunk(records) == exact_results(records, header, UPLOAD_DATE)


_DATE_TEXTS = [
    "1/2/2020",
    "01/02/2020",
    "31/02/2020",
    "29/2/2000",
    "29/2/1900",
    "2020-02-29",
    "2021-02-29",
    "2020-2-29",
    "0000-01-01",
    "0001-01-01",
    "9999-12-31",
    "1970-01-01",
    "1/1/0000",
    "",
    " 1/2/2020",
    "x",
]


class TestDateReader:
    """The dates of `parse_date`, whatever the reader remembers from earlier columns."""

    @settings(max_examples=100, deadline=None)
    @given(
        columns=st.lists(
            st.lists(st.sampled_from(_DATE_TEXTS) | st.none(), max_size=12), max_size=6
        ),
        entries=st.sampled_from([1, 3, 1 << 17]),
        iso=st.booleans(),
    )
    def test_each_column_as_parse_date_reads_it(
        self, columns: list[list[str | None]], entries: int, iso: bool
    ) -> None:
        with pytest.MonkeyPatch.context() as monkeypatch:
            # A small bound makes the reader start over (its texts forgotten) now and then.
            monkeypatch.setattr(bulk_rules, "_DATE_CACHE_ENTRIES", entries)
            reader = DateReader(iso=iso)
            for texts in columns:
                got = reader(pl.Series(texts, dtype=pl.String))
                assert got.dtype == reader.dtype
                days = [None if text is None else parse_date(text) for text in texts]
                assert got.struct.field("day").to_list() == days
                assert got.struct.field("number").to_list() == [
                    None if day is None else int(day.strftime("%Y%m%d")) for day in days
                ]
                if iso:
                    assert got.struct.field("iso").to_list() == [
                        None if day is None else day.isoformat() for day in days
                    ]
