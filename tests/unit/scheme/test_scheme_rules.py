"""The cell rules of section 2 and the algorithms of section 3, one function at a time."""

from __future__ import annotations

from datetime import date

import pytest

from services.core.scheme.codes import Code
from services.core.scheme.reference import bundled_reference
from services.core.scheme.rules import (
    FINDING,
    age_on,
    check_achievement_date,
    check_age,
    check_citb_id,
    check_course_approval,
    check_course_code,
    check_date_of_birth,
    check_levy_number,
    check_name,
    check_ni_number,
    check_notes,
    check_provider_reference,
    check_uln,
    normalise_notes,
    parse_date,
    uln_check_digit_ok,
)
from services.core.scheme.text import clean_cell, normalise_levy_number, remove_white_space

TODAY = date(2026, 11, 20)


def code_of(finding: object) -> str | None:
    return None if finding is None else finding.code.value  # type: ignore[attr-defined]


class TestUlnCheckDigit:
    @pytest.mark.parametrize("uln", ["1000000043", "1234567899", "5555555554", "1111111110"])
    def test_the_scheme_examples_are_valid(self, uln: str) -> None:
        assert uln_check_digit_ok(uln)
        assert check_uln(uln) is None

    def test_the_scheme_invalid_example_is_uln_03(self) -> None:
        assert code_of(check_uln("1234567890")) == "ULN_03"

    def test_remainder_zero_is_invalid_whatever_the_last_digit(self) -> None:
        # 10*1 + 2*6 = 22, and 22 mod 11 = 0.
        assert all(code_of(check_uln(f"100000006{last}")) == "ULN_03" for last in range(10))

    def test_remainder_ten_needs_last_digit_zero(self) -> None:
        # 1111111110: the weights sum to 54, 54 mod 11 = 10, so the check digit is 0.
        assert check_uln("1111111110") is None
        assert code_of(check_uln("1111111111")) == "ULN_03"


class TestUlnFormat:
    @pytest.mark.parametrize(
        "uln", ["0123456789", "123456789", "12345678901", "12345678A9", "١٢٣٤٥٦٧٨٩٩"]
    )
    def test_not_ten_ascii_digits_starting_1_to_9_is_uln_01(self, uln: str) -> None:
        assert code_of(check_uln(uln)) == "ULN_01"

    def test_temporary_number_is_uln_02_before_the_check_digit(self) -> None:
        assert code_of(check_uln("9999999999")) == "ULN_02"

    def test_scientific_notation_is_uln_01_with_the_damage_message(self) -> None:
        finding = check_uln("1.23457E+09")
        assert finding is not None
        assert finding.code is Code.ULN_01
        assert "spreadsheet changed" in finding.message
        assert "1.23457" not in finding.message

    def test_plain_format_error_has_the_plain_message(self) -> None:
        finding = check_uln("12345")
        assert finding is not None
        assert "spreadsheet" not in finding.message


class TestNiNumber:
    def test_scheme_examples(self) -> None:
        assert check_ni_number("AB123456C") is None
        assert code_of(check_ni_number("QQ123456C")) == "NINO_02"
        assert code_of(check_ni_number("OO123456A")) == "NINO_03"
        assert code_of(check_ni_number("AB123456E")) == "NINO_01"

    @pytest.mark.parametrize("prefix", ["OO", "CR", "FY", "MW", "NC", "PP", "PY", "PZ"])
    def test_administrative_prefixes_are_nino_03(self, prefix: str) -> None:
        assert code_of(check_ni_number(f"{prefix}123456A")) == "NINO_03"

    @pytest.mark.parametrize(
        "prefix",
        [
            "DA",
            "AD",
            "FA",
            "IA",
            "QA",
            "UA",
            "VA",
            "AV",
            "AO",
            "BG",
            "GB",
            "KN",
            "NK",
            "NT",
            "TN",
            "ZZ",
        ],
    )
    def test_never_issued_prefixes_are_nino_02(self, prefix: str) -> None:
        assert code_of(check_ni_number(f"{prefix}123456A")) == "NINO_02"

    @pytest.mark.parametrize("suffix", ["A", "B", "C", "D"])
    def test_suffixes_a_to_d_are_valid(self, suffix: str) -> None:
        assert check_ni_number(f"AB123456{suffix}") is None

    @pytest.mark.parametrize("nino", ["AB12345C", "AB1234567C", "A1123456C", "AB123456", ""])
    def test_bad_shape_is_nino_01(self, nino: str) -> None:
        assert code_of(check_ni_number(nino)) == "NINO_01"


class TestCitbId:
    @pytest.mark.parametrize("citb", ["ABC12", "123456789012", "12E4567"])
    def test_five_to_twelve_letters_and_digits_are_valid(self, citb: str) -> None:
        assert check_citb_id(citb) is None

    @pytest.mark.parametrize("citb", ["ABC1", "1234567890123", "AB-123", "ÄBC123", "ABC12３"])
    def test_anything_else_is_citbid_01(self, citb: str) -> None:
        assert code_of(check_citb_id(citb)) == "CITBID_01"


class TestLevyNumber:
    reference = bundled_reference()

    def test_registered_grant_eligible_number_is_valid_and_returns_the_employer(self) -> None:
        employer, finding = check_levy_number("79049946", self.reference)
        assert finding is None
        assert employer is not None
        assert employer.employer_name == "Brightstone Contractors LLP"

    def test_empty_is_levy_03_never_levy_01(self) -> None:
        assert code_of(check_levy_number("", self.reference)[1]) == "LEVY_03"

    def test_a_cell_of_separators_only_normalises_to_empty(self) -> None:
        assert normalise_levy_number(" - / ") == ""

    @pytest.mark.parametrize("levy", ["123456", "1234567890", "AB1234567", "1234567A"])
    def test_bad_format_is_levy_01(self, levy: str) -> None:
        assert code_of(check_levy_number(levy, self.reference)[1]) == "LEVY_01"

    def test_not_in_register_is_levy_02(self) -> None:
        assert code_of(check_levy_number("12345678", self.reference)[1]) == "LEVY_02"

    def test_registered_but_not_grant_eligible_is_levy_02(self) -> None:
        employer, finding = check_levy_number("G719507518", self.reference)
        assert employer is None
        assert code_of(finding) == "LEVY_02"

    def test_normalisation_upper_cases_and_removes_spaces_slashes_hyphens(self) -> None:
        assert normalise_levy_number(" m128/61-01 ") == "M1286101"
        assert normalise_levy_number("g\u00a0719 507 518") == "G719507518"


class TestDates:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("1/3/2026", date(2026, 3, 1)),
            ("01/03/2026", date(2026, 3, 1)),
            ("1/03/2026", date(2026, 3, 1)),
            ("2026-03-01", date(2026, 3, 1)),
            ("29/02/2024", date(2024, 2, 29)),
        ],
    )
    def test_accepted_forms_are_day_first(self, text: str, expected: date) -> None:
        assert parse_date(text) == expected

    @pytest.mark.parametrize(
        "text",
        [
            "45306",
            "1/3/26",
            "2026-3-1",
            "2026-03-1",
            "01-03-2026",
            "1 March 2026",
            "31/02/2026",
            "29/02/2026",
            "00/01/2026",
            "0000-01-01",
            "001/03/2026",
            "2026/03/01",
            "01/03/2026\n",
            "",
        ],
    )
    def test_anything_else_is_not_a_date(self, text: str) -> None:
        assert parse_date(text) is None

    def test_achievement_date_on_the_upload_date_is_valid(self) -> None:
        assert check_achievement_date("20/11/2026", TODAY) == (TODAY, None)

    def test_achievement_date_the_day_after_the_upload_date_is_achdate_02(self) -> None:
        day, finding = check_achievement_date("21/11/2026", TODAY)
        assert day is None
        assert code_of(finding) == "ACHDATE_02"

    def test_exactly_ten_days_before_the_upload_date_has_no_warning(self) -> None:
        assert check_achievement_date("10/11/2026", TODAY) == (date(2026, 11, 10), None)

    def test_eleven_days_before_the_upload_date_warns_and_stays_valid(self) -> None:
        day, finding = check_achievement_date("09/11/2026", TODAY)
        assert day == date(2026, 11, 9)
        assert code_of(finding) == "ACHDATE_03"

    def test_empty_or_unparseable_achievement_date_is_achdate_01(self) -> None:
        assert code_of(check_achievement_date("", TODAY)[1]) == "ACHDATE_01"
        assert code_of(check_achievement_date("2026-11-31", TODAY)[1]) == "ACHDATE_01"

    def test_empty_or_unparseable_date_of_birth_is_dob_01(self) -> None:
        assert code_of(check_date_of_birth("")[1]) == "DOB_01"
        assert code_of(check_date_of_birth("14.03.1990")[1]) == "DOB_01"


class TestAge:
    achieved = date(2026, 11, 12)

    def test_fifteen_on_the_birthday_is_valid(self) -> None:
        assert check_age(date(2011, 11, 12), self.achieved) is None

    def test_the_day_before_the_fifteenth_birthday_is_dob_02(self) -> None:
        assert code_of(check_age(date(2011, 11, 13), self.achieved)) == "DOB_02"

    def test_114_is_valid_until_the_115th_birthday(self) -> None:
        assert check_age(date(1911, 11, 13), self.achieved) is None  # 114, a day short of 115
        assert code_of(check_age(date(1911, 11, 12), self.achieved)) == "DOB_02"  # 115 today

    def test_a_birth_after_the_achievement_counts_as_under_15(self) -> None:
        assert code_of(check_age(date(2026, 11, 13), self.achieved)) == "DOB_02"

    def test_a_29_february_birthday_rises_on_1_march_in_common_years(self) -> None:
        assert age_on(date(2008, 2, 29), date(2023, 2, 28)) == 14
        assert age_on(date(2008, 2, 29), date(2023, 3, 1)) == 15


class TestCourse:
    reference = bundled_reference()

    def test_known_code_returns_the_course(self) -> None:
        course, finding = check_course_code("SD-WAH-101", self.reference)
        assert finding is None
        assert course is not None
        assert course.title == "Working at height"

    @pytest.mark.parametrize(
        ("code", "expected"),
        [
            ("", "COURSE_01"),
            ("-SD", "COURSE_02"),
            ("S", "COURSE_02"),
            ("SD_WAH_101", "COURSE_02"),
            ("A" * 21, "COURSE_02"),
            ("SD-XYZ-999", "COURSE_03"),
            ("A" * 20, "COURSE_03"),
        ],
    )
    def test_course_code_rules_in_order(self, code: str, expected: str) -> None:
        assert code_of(check_course_code(code, self.reference)[1]) == expected

    def test_approval_period_is_inclusive_at_both_ends(self) -> None:
        ended = self.reference.course("SD-MHA-106")
        assert ended is not None
        assert check_course_approval(ended, date(2024, 3, 31)) is None
        assert code_of(check_course_approval(ended, date(2024, 4, 1))) == "COURSE_04"
        assert check_course_approval(ended, date(2018, 4, 1)) is None
        assert code_of(check_course_approval(ended, date(2018, 3, 31))) == "COURSE_04"


class TestNames:
    @pytest.mark.parametrize("name", ["Amelia", "O'Neill", "Zoë", "Anne-Marie", "N" * 100])
    def test_valid_names(self, name: str) -> None:
        assert check_name(name, Code.NAME_01) is None

    @pytest.mark.parametrize(
        "name", ["", "N" * 101, "Amelia2", "Amelia٣", "Ame|lia", 'Ame"lia', "Ame\x07lia", "A\x7f"]
    )
    def test_invalid_names_get_the_column_code(self, name: str) -> None:
        assert code_of(check_name(name, Code.NAME_01)) == "NAME_01"
        assert code_of(check_name(name, Code.NAME_02)) == "NAME_02"


class TestProviderReferenceAndNotes:
    def test_provider_reference_of_50_characters_is_valid_51_is_ref_01(self) -> None:
        assert check_provider_reference("R" * 50) is None
        assert code_of(check_provider_reference("R" * 51)) == "REF_01"

    def test_provider_reference_with_a_control_character_is_ref_01(self) -> None:
        assert code_of(check_provider_reference("R\x851")) == "REF_01"  # C1 control

    def test_notes_line_breaks_and_tabs_become_one_space_each(self) -> None:
        assert normalise_notes("a\r\nb\tc\rd\ne") == "a  b c d e"

    def test_notes_of_255_characters_is_valid_256_is_notes_01(self) -> None:
        assert check_notes("n" * 255) is None
        assert code_of(check_notes("n" * 256)) == "NOTES_01"

    def test_notes_with_another_control_character_is_notes_01(self) -> None:
        assert code_of(check_notes("bell\x07")) == "NOTES_01"

    @pytest.mark.parametrize("notes", ["=SUM(A1)", "+1", "-x", "@cmd"])
    def test_notes_starting_like_a_formula_warn(self, notes: str) -> None:
        assert code_of(check_notes(notes)) == "NOTES_02"

    def test_too_long_notes_report_notes_01_not_the_formula_warning(self) -> None:
        assert code_of(check_notes("=" + "n" * 300)) == "NOTES_01"


class TestCellCleaning:
    def test_unicode_white_space_is_trimmed(self) -> None:
        assert clean_cell("\u00a0\u3000 x \t\u2003") == "x"

    def test_control_characters_that_python_counts_as_space_are_not_trimmed(self) -> None:
        assert clean_cell("\x1fx") == "\x1fx"

    def test_text_formula_is_unwrapped_then_trimmed(self) -> None:
        assert clean_cell(' =" 0123 " ') == "0123"
        assert clean_cell('=""') == ""

    def test_only_a_complete_wrapper_is_unwrapped(self) -> None:
        assert clean_cell('="0123') == '="0123'

    def test_spaces_removed_means_every_white_space_character(self) -> None:
        assert remove_white_space("AB 12\u00a034\t56 C") == "AB123456C"


@pytest.mark.parametrize(
    "name",
    [
        "Ann\u202aa",  # left-to-right embedding
        "Ann\u202eX",  # right-to-left override
        "\u2066Ann",  # left-to-right isolate
        "Ann\u2069",  # pop directional isolate
    ],
)
def test_names_with_bidirectional_controls_are_refused(name: str) -> None:
    """Scheme v1.1, section 8: bidi embedding, override and isolate characters in a name are
    control characters (NAME_01 for the forename, NAME_02 for the surname)."""
    assert check_name(name, Code.NAME_01) == FINDING[Code.NAME_01]
    assert check_name(name, Code.NAME_02) == FINDING[Code.NAME_02]


def test_a_right_to_left_name_without_controls_is_a_name() -> None:
    assert check_name("\u05d3\u05d5\u05d3", Code.NAME_01) is None  # Hebrew letters
