"""Header matching (sections 1 and 8) and the FILE_04 message."""

from __future__ import annotations

import pytest
from scheme_builders import HEADERS

from services.core.scheme.codes import FILE_CODES, ROW_LEVEL_CODES, Code, FileError
from services.core.scheme.columns import (
    COLUMN_POSITION,
    COLUMNS,
    Column,
    HeaderMap,
    match_header,
    template_header_line,
)
from services.core.scheme.text import column_letter


def header_error(cells: list[str]) -> str:
    result = match_header(cells)
    assert isinstance(result, FileError)
    assert result.code is Code.FILE_04
    return result.message


class TestTemplate:
    def test_eleven_columns_in_template_order_with_letters_a_to_k(self) -> None:
        assert [spec.letter for spec in COLUMNS] == list("ABCDEFGHIJK")
        assert [spec.header for spec in COLUMNS] == [column.value for column in Column]
        assert template_header_line().split(",") == HEADERS

    def test_every_cell_code_belongs_to_exactly_one_column(self) -> None:
        codes = [code for spec in COLUMNS for code in spec.codes]
        assert len(codes) == len(set(codes))
        assert set(codes) == set(Code) - set(FILE_CODES) - set(ROW_LEVEL_CODES)

    def test_nino_codes_are_listed_in_the_order_they_are_checked(self) -> None:
        spec = COLUMNS[COLUMN_POSITION[Column.NI_NUMBER]]
        assert spec.codes == (Code.NINO_01, Code.NINO_03, Code.NINO_02)

    def test_column_letters_continue_past_z(self) -> None:
        assert [column_letter(i) for i in (0, 25, 26, 27, 51, 52, 701, 702)] == [
            "A",
            "Z",
            "AA",
            "AB",
            "AZ",
            "BA",
            "ZZ",
            "AAA",
        ]


class TestMatching:
    def test_exact_headers_map_to_their_positions(self) -> None:
        result = match_header(HEADERS)
        assert result == HeaderMap(tuple(range(11)), 11)

    @pytest.mark.parametrize(
        "variant", ["CourseCode", "Course Code", "course_code", "COURSECODE", " course-code "]
    )
    def test_case_spaces_underscores_and_hyphens_are_ignored(self, variant: str) -> None:
        headers = [variant if header == "CourseCode" else header for header in HEADERS]
        assert isinstance(match_header(headers), HeaderMap)

    def test_other_white_space_is_ignored_too(self) -> None:
        headers = ["\u00a0Learner\tForename " if h == "LearnerForename" else h for h in HEADERS]
        assert isinstance(match_header(headers), HeaderMap)

    def test_columns_in_any_order_are_mapped_by_name(self) -> None:
        reordered = list(reversed(HEADERS))
        result = match_header(reordered)
        assert isinstance(result, HeaderMap)
        assert result.index(Column.PROVIDER_REFERENCE) == 10
        assert result.index(Column.NOTES) == 0

    def test_fully_empty_trailing_header_cells_are_ignored(self) -> None:
        result = match_header([*HEADERS, "", "  ", "\t"])
        assert isinstance(result, HeaderMap)
        assert result.width == 11

    def test_punctuation_other_than_underscore_and_hyphen_is_not_ignored(self) -> None:
        headers = ["Course.Code" if h == "CourseCode" else h for h in HEADERS]
        assert "missing CourseCode" in header_error(headers)


class TestFile04Messages:
    def test_a_missing_header_is_named(self) -> None:
        message = header_error([h for h in HEADERS if h != "DateOfBirth"])
        assert message == "The header row does not match the template: missing DateOfBirth."

    def test_several_missing_headers_are_all_named(self) -> None:
        message = header_error(HEADERS[:9])
        assert "missing EmployerLevyNumber, Notes" in message

    def test_a_duplicated_header_names_its_columns(self) -> None:
        message = header_error([*HEADERS, "course code"])
        assert "CourseCode appears 2 times (columns B and L)" in message

    def test_an_unknown_header_is_named_by_column_letter_not_by_its_text(self) -> None:
        message = header_error([*HEADERS, "Jane Learner"])
        assert "the header in column L is not a template header" in message
        assert "Jane" not in message

    def test_an_empty_header_cell_before_the_last_non_empty_one_is_a_problem(self) -> None:
        message = header_error([*HEADERS[:5], " ", *HEADERS[5:]])
        assert message.endswith("the header in column F is empty.")

    def test_every_problem_is_listed_in_one_message(self) -> None:
        headers = [h for h in HEADERS if h not in ("ULN", "Notes")]
        headers += ["uln ", "ULN", "Extra", "", "More"]
        message = header_error(headers)
        assert message == (
            "The header row does not match the template: missing Notes;"
            " ULN appears 2 times (columns J and K); the headers in columns L and N are not"
            " template headers; the header in column M is empty."
        )

    def test_twenty_five_unknown_headers_name_twenty_then_and_5_more(self) -> None:
        message = header_error([*HEADERS, *["Extra"] * 25])
        assert message == (
            "The header row does not match the template: the headers in columns L, M, N, O, P,"
            " Q, R, S, T, U, V, W, X, Y, Z, AA, AB, AC, AD and AE are not template headers;"
            " and 5 more."
        )

    def test_twenty_problems_are_all_named(self) -> None:
        message = header_error([*HEADERS, *["Extra"] * 20])
        assert message == (
            "The header row does not match the template: the headers in columns L, M, N, O, P,"
            " Q, R, S, T, U, V, W, X, Y, Z, AA, AB, AC, AD and AE are not template headers."
        )

    def test_the_limit_counts_problems_of_every_kind_in_message_order(self) -> None:
        # 2 missing, 1 duplicated, 16 unknown, then 3 empty: 22 problems, the last 2 unnamed.
        headers = [h for h in HEADERS if h not in ("ULN", "Notes")]
        headers += ["CourseCode", *["x"] * 15, "", " ", "", "y"]
        message = header_error(headers)
        assert message == (
            "The header row does not match the template: missing ULN, Notes;"
            " CourseCode appears 2 times (columns B and J); the headers in columns K, L, M, N,"
            " O, P, Q, R, S, T, U, V, W, X, Y and AC are not template headers; the header in"
            " column Z is empty; and 2 more."
        )

    def test_the_columns_of_a_much_duplicated_header_are_bounded(self) -> None:
        message = header_error([*HEADERS, *["ULN"] * 24])
        assert message == (
            "The header row does not match the template: ULN appears 25 times (columns G, L,"
            " M, N, O, P, Q, R, S, T, U, V, W, X, Y, Z, AA, AB, AC, AD and 5 more)."
        )

    def test_a_header_row_of_a_thousand_long_unknown_cells_gives_a_short_message(self) -> None:
        message = header_error(["x" * 130] * 1000)
        assert len(message) < 1000
        assert "xx" not in message
        assert message.startswith(
            "The header row does not match the template: missing ProviderReference,"
        )
        # 11 missing and 1,000 unknown: the 11 and the first 9 unknown are named.
        assert (
            "the headers in columns A, B, C, D, E, F, G, H and I are not template headers;"
            in message
        )
        assert "; and 991 more." in message

    def test_a_data_row_in_place_of_the_header_says_the_header_row_is_missing(self) -> None:
        row = ["REF-1", "SD-WAH-101", "12/11/2026", "Amelia", "Hartley", "14/03/1990"]
        message = header_error(row)
        assert "No template header was found" in message
        assert template_header_line() in message
        assert "Amelia" not in message
        assert "Hartley" not in message
