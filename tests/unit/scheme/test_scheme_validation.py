"""A row through every rule: `RowValidator`, the row-level rules and `InFileDuplicates`."""

from __future__ import annotations

from datetime import date

import pytest
from scheme_builders import UPLOAD_DATE, VALID, cells, codes, validate, validator

from services.core.scheme.codes import Code, Severity
from services.core.scheme.columns import COLUMN_OF_CODE, Column, HeaderMap, match_header
from services.core.scheme.reference import bundled_reference
from services.core.scheme.validation import (
    Achievement,
    InFileDuplicates,
    RowResult,
    RowValidator,
    duplicate_issue,
    duplicate_key_text,
)


class TestValidRow:
    def test_valid_row_has_no_issue_and_carries_normalised_values(self) -> None:
        result = validate(
            ProviderReference="  REF-9 ",
            CourseCode="sd-wah-101",
            AchievementDate="2026-11-12",
            LearnerForename=" Amelia ",
            ULN="10000 00043",
            NINumber="ab 12 34 56 c",
            CITBIndividualId="abc12345",
            EmployerLevyNumber="m128-6101",
            Notes="line one\r\nline two",
        )
        assert result.issues == ()
        assert result.is_valid
        assert not result.has_warning
        assert result.achievement == Achievement(
            provider_reference="REF-9",
            course_code="SD-WAH-101",
            achievement_date=date(2026, 11, 12),
            forename="Amelia",
            surname="Hartley",
            date_of_birth=date(1990, 3, 14),
            uln="1000000043",
            ni_number="AB123456C",
            citb_individual_id="ABC12345",
            levy_number="M1286101",
            notes="line one  line two",
            grant_eligible=True,
        )

    def test_optional_cells_left_empty_become_none(self) -> None:
        achievement = validate(ProviderReference="", Notes="").achievement
        assert achievement is not None
        assert achievement.provider_reference is None
        assert achievement.notes is None
        assert achievement.ni_number is None
        assert achievement.citb_individual_id is None

    def test_empty_levy_number_is_a_warning_and_not_grant_eligible(self) -> None:
        result = validate(EmployerLevyNumber="")
        assert codes(result) == ["LEVY_03"]
        assert result.is_valid
        assert result.has_warning
        assert result.achievement is not None
        assert not result.achievement.grant_eligible

    def test_registered_but_ineligible_employer_is_a_warning_and_not_grant_eligible(self) -> None:
        result = validate(EmployerLevyNumber="G719507518")
        assert codes(result) == ["LEVY_02"]
        assert result.achievement is not None
        assert result.achievement.levy_number == "G719507518"
        assert not result.achievement.grant_eligible

    def test_unregistered_levy_number_is_a_warning(self) -> None:
        assert codes(validate(EmployerLevyNumber="A1234567")) == ["LEVY_02"]


class TestCellCodesInRows:
    @pytest.mark.parametrize(
        ("changes", "expected"),
        [
            ({"ProviderReference": "R" * 51}, "REF_01"),
            ({"CourseCode": ""}, "COURSE_01"),
            ({"CourseCode": "SD WAH 101"}, "COURSE_02"),
            ({"CourseCode": "SD-XYZ-999"}, "COURSE_03"),
            ({"CourseCode": "SD-MHA-106"}, "COURSE_04"),
            ({"AchievementDate": "12/13/2026"}, "ACHDATE_01"),
            ({"AchievementDate": "21/11/2026"}, "ACHDATE_02"),
            ({"AchievementDate": "09/11/2026"}, "ACHDATE_03"),
            ({"LearnerForename": ""}, "NAME_01"),
            ({"LearnerSurname": "Hartley2"}, "NAME_02"),
            ({"DateOfBirth": "1990-3-14"}, "DOB_01"),
            ({"DateOfBirth": "13/11/2011"}, "DOB_02"),
            ({"ULN": "123"}, "ULN_01"),
            ({"ULN": "9999999999"}, "ULN_02"),
            ({"ULN": "1234567890"}, "ULN_03"),
            ({"NINumber": "AB123456E"}, "NINO_01"),
            ({"NINumber": "TN123456A"}, "NINO_02"),
            ({"NINumber": "CR123456A"}, "NINO_03"),
            ({"CITBIndividualId": "A1"}, "CITBID_01"),
            ({"EmployerLevyNumber": "12"}, "LEVY_01"),
            ({"EmployerLevyNumber": "99999999"}, "LEVY_02"),
            ({"EmployerLevyNumber": "  "}, "LEVY_03"),
            ({"Notes": "tab\tok but bell \x07"}, "NOTES_01"),
            ({"Notes": "@SUM(1)"}, "NOTES_02"),
        ],
    )
    def test_each_cell_code_is_reported_in_its_column(
        self, changes: dict[str, str], expected: str
    ) -> None:
        result = validate(**changes)
        assert codes(result) == [expected]
        issue = result.issues[0]
        assert issue.column is COLUMN_OF_CODE[issue.code]
        assert issue.row == 2

    def test_only_the_first_failing_rule_of_a_cell_is_reported(self) -> None:
        # Too long, and a formula: NOTES_01 only.
        assert codes(validate(Notes="=" + "x" * 300)) == ["NOTES_01"]

    def test_course_04_is_not_checked_when_the_achievement_date_is_invalid(self) -> None:
        assert codes(validate(CourseCode="SD-MHA-106", AchievementDate="x")) == ["ACHDATE_01"]

    def test_course_04_is_not_checked_for_a_future_achievement_date(self) -> None:
        result = validate(CourseCode="SD-EFA-108", AchievementDate="21/11/2026")
        assert codes(result) == ["ACHDATE_02"]

    def test_course_04_is_checked_when_the_achievement_date_only_warns(self) -> None:
        result = validate(CourseCode="SD-MHA-106", AchievementDate="01/01/2025")
        assert codes(result) == ["COURSE_04", "ACHDATE_03"]

    def test_course_not_yet_approved_on_an_achievement_date_is_course_04(self) -> None:
        # SD-EFA-108 is approved from 2027-01-01; an upload on that day could use it.
        assert codes(validate(CourseCode="SD-EFA-108")) == ["COURSE_04"]
        new_year = date(2027, 1, 1)
        assert (
            codes(validate(CourseCode="SD-EFA-108", AchievementDate="1/1/2027", today=new_year))
            == []
        )
        assert codes(
            validate(CourseCode="SD-EFA-108", AchievementDate="31/12/2026", today=new_year)
        ) == ["COURSE_04"]

    def test_course_04_boundary_at_valid_to(self) -> None:
        upload = date(2024, 4, 5)
        assert (
            codes(validate(CourseCode="SD-MHA-106", AchievementDate="31/03/2024", today=upload))
            == []
        )
        assert codes(
            validate(CourseCode="SD-MHA-106", AchievementDate="01/04/2024", today=upload)
        ) == ["COURSE_04"]

    def test_dob_02_is_not_checked_when_the_achievement_date_is_invalid(self) -> None:
        result = validate(AchievementDate="", DateOfBirth="01/01/2020")
        assert codes(result) == ["ACHDATE_01"]

    def test_age_boundaries_on_the_achievement_date(self) -> None:
        # Achievement date 12/11/2026.
        assert codes(validate(DateOfBirth="12/11/2011")) == []  # 15 on the day
        assert codes(validate(DateOfBirth="13/11/2011")) == ["DOB_02"]  # 15 tomorrow
        assert codes(validate(DateOfBirth="13/11/1911")) == []  # 114
        assert codes(validate(DateOfBirth="12/11/1911")) == ["DOB_02"]  # 115

    def test_achievement_date_boundaries_against_the_upload_date(self) -> None:
        assert codes(validate(AchievementDate="20/11/2026")) == []  # the upload date
        assert codes(validate(AchievementDate="21/11/2026")) == ["ACHDATE_02"]  # tomorrow
        assert codes(validate(AchievementDate="10/11/2026")) == []  # 10 days before
        assert codes(validate(AchievementDate="9/11/2026")) == ["ACHDATE_03"]  # 11 days

    def test_warnings_keep_the_row_valid(self) -> None:
        result = validate(AchievementDate="01/11/2026", EmployerLevyNumber="", Notes="-")
        assert codes(result) == ["ACHDATE_03", "LEVY_03", "NOTES_02"]
        assert result.is_valid
        assert result.has_warning
        assert result.achievement is not None

    def test_errors_make_the_row_invalid_with_no_values(self) -> None:
        result = validate(LearnerForename="")
        assert not result.is_valid
        assert result.achievement is None

    def test_issues_come_in_template_column_order(self) -> None:
        result = validate(
            Notes="=1",
            ProviderReference="R" * 60,
            ULN="1",
            CourseCode="",
            DateOfBirth="?",
        )
        assert codes(result) == ["REF_01", "COURSE_01", "DOB_01", "ULN_01", "NOTES_02"]

    def test_every_identifier_given_is_validated(self) -> None:
        result = validate(NINumber="AB123456E", CITBIndividualId="!")
        assert codes(result) == ["NINO_01", "CITBID_01"]


class TestSpreadsheetDamage:
    def test_text_formula_wrapper_is_unwrapped_in_every_column(self) -> None:
        result = validate(
            CourseCode='="SD-WAH-101"',
            AchievementDate='="12/11/2026"',
            LearnerForename='="Amelia"',
            ULN='="1000000043"',
            EmployerLevyNumber='="079049946"',
        )
        assert codes(result) == ["LEVY_02"]  # 079049946 is not 79049946
        assert result.achievement is not None
        assert result.achievement.uln == "1000000043"

    def test_unwrapping_keeps_leading_zeros(self) -> None:
        result = validate(EmployerLevyNumber='="055052479"')
        assert result.issues == ()
        assert result.achievement is not None
        assert result.achievement.levy_number == "055052479"

    @pytest.mark.parametrize(
        ("column", "code"),
        [
            ("ULN", "ULN_01"),
            ("NINumber", "NINO_01"),
            ("CITBIndividualId", "CITBID_01"),
            ("EmployerLevyNumber", "LEVY_01"),
        ],
    )
    def test_scientific_notation_in_an_identifier_column_says_the_spreadsheet_changed_it(
        self, column: str, code: str
    ) -> None:
        changes = {column: "1.23457E+09"}
        if column != "ULN":
            changes["ULN"] = "1000000043"
        issue = validate(**changes).issues[0]
        assert issue.code.value == code
        assert "spreadsheet changed" in issue.message
        assert "1.23457" not in issue.message
        assert "E+09" not in issue.message

    def test_a_lower_case_exponent_with_decimal_comma_is_recognised(self) -> None:
        issue = validate(ULN="1,23457e+09").issues[0]
        assert issue.code is Code.ULN_01
        assert "spreadsheet changed" in issue.message


class TestRowLevelRules:
    def test_no_identifier_is_id_01_at_row_level(self) -> None:
        result = validate(ULN="", NINumber="", CITBIndividualId="")
        assert codes(result) == ["ID_01"]
        assert result.issues[0].column is None

    def test_an_invalid_identifier_is_still_given_so_no_id_01(self) -> None:
        assert codes(validate(ULN="12")) == ["ULN_01"]

    def test_identifier_cell_of_white_space_only_is_not_given(self) -> None:
        assert codes(validate(ULN=" \u00a0 ")) == ["ID_01"]

    def test_extra_non_empty_cell_is_row_01_after_the_cells(self) -> None:
        result = validator().validate((7, [*cells(LearnerForename=""), "", "surprise"]))
        assert result is not None
        assert codes(result) == ["NAME_01", "ROW_01"]
        assert result.issues[1].column is None
        assert result.issues[1].row == 7

    def test_extra_cells_of_white_space_only_are_not_row_01(self) -> None:
        result = validator().validate((2, [*cells(), " ", "\t"]))
        assert result is not None
        assert result.issues == ()

    def test_row_level_codes_come_last_in_scheme_order(self) -> None:
        result = validator().validate((3, [*cells(ULN="", Notes="+x"), "extra"]))
        assert result is not None
        assert codes(result) == ["NOTES_02", "ID_01", "ROW_01"]

    def test_short_record_is_padded_with_empty_cells(self) -> None:
        short = cells()[:9]  # no levy number or notes
        result = validator().validate((2, short))
        assert result is not None
        assert codes(result) == ["LEVY_03"]

    def test_a_record_of_one_empty_cell_is_blank(self) -> None:
        assert validator().validate((2, [])) is None
        assert validator().validate((2, [""])) is None

    def test_a_record_of_white_space_cells_is_blank(self) -> None:
        assert validator().validate((5, [" "] * 11)) is None
        assert validator().validate((5, [" "] * 14)) is None

    def test_a_record_with_only_an_extra_cell_is_not_blank(self) -> None:
        result = validator().validate((4, [""] * 11 + ["x"]))
        assert result is not None
        assert "ROW_01" in codes(result)
        assert "COURSE_01" in codes(result)

    def test_a_text_formula_of_nothing_is_not_blank_after_trimming(self) -> None:
        result = validator().validate((4, ['=""'] + [""] * 10))
        assert result is not None
        assert "COURSE_01" in codes(result)


class TestColumnsInAnyOrder:
    def test_the_header_map_routes_cells_by_header_not_position(self) -> None:
        headers = list(reversed([*VALID]))
        header = match_header(headers)
        assert isinstance(header, HeaderMap)
        row = [VALID[name] for name in headers]
        result = RowValidator(header, UPLOAD_DATE, bundled_reference()).validate((2, row))
        assert result is not None
        assert result.issues == ()
        assert result.achievement is not None
        assert result.achievement.uln == "1000000043"


class TestDuplicateKeys:
    def test_one_key_per_valid_identifier(self) -> None:
        result = validate(NINumber="AB123456C", CITBIndividualId="ABC12345")
        assert result.duplicate_keys == (
            ("SD-WAH-101", "2026-11-12", "uln", "1000000043"),
            ("SD-WAH-101", "2026-11-12", "ni_number", "AB123456C"),
            ("SD-WAH-101", "2026-11-12", "citb_individual_id", "ABC12345"),
        )

    def test_invalid_identifier_gives_no_key_for_it(self) -> None:
        result = validate(NINumber="AB123456E")
        assert [key[2] for key in result.duplicate_keys] == ["uln"]

    def test_invalid_course_or_date_gives_no_keys(self) -> None:
        assert validate(CourseCode="SD-XYZ-999").duplicate_keys == ()
        assert validate(CourseCode="SD-MHA-106").duplicate_keys == ()
        assert validate(AchievementDate="21/11/2026").duplicate_keys == ()

    def test_a_warning_on_the_date_still_gives_keys(self) -> None:
        assert validate(AchievementDate="01/11/2026").duplicate_keys != ()

    def test_keys_exist_for_rows_with_errors_in_other_columns(self) -> None:
        result = validate(LearnerForename="")
        assert not result.is_valid
        assert len(result.duplicate_keys) == 1

    def test_key_text_is_pipe_separated(self) -> None:
        assert duplicate_key_text(("A", "2026-01-01", "uln", "1")) == "A|2026-01-01|uln|1"


class TestInFileDuplicates:
    def run(self, *rows: dict[str, str]) -> list[RowResult]:
        duplicates = InFileDuplicates()
        check = validator()
        out = []
        for number, changes in enumerate(rows, start=2):
            result = check.validate((number, cells(**changes)))
            assert result is not None
            out.append(duplicates.apply(result))
        return out

    def test_second_occurrence_gets_dup_01_and_becomes_invalid(self) -> None:
        first, second = self.run({}, {"ProviderReference": "other"})
        assert first.issues == ()
        assert first.is_valid
        assert codes(second) == ["DUP_01"]
        assert not second.is_valid
        assert second.achievement is None
        assert second.issues[0].column is None

    def test_the_first_occurrence_counts_even_with_errors_in_other_columns(self) -> None:
        first, second = self.run({"LearnerForename": ""}, {})
        assert codes(first) == ["NAME_01"]
        assert codes(second) == ["DUP_01"]

    def test_any_one_equal_identifier_is_enough(self) -> None:
        rows = self.run(
            {"ULN": "1000000043", "NINumber": "AB123456C"},
            {"ULN": "1234567899", "NINumber": "AB 123456 C"},
        )
        assert codes(rows[1]) == ["DUP_01"]

    def test_a_duplicate_rows_other_identifiers_count_for_later_rows(self) -> None:
        rows = self.run(
            {"ULN": "1000000043"},
            {"ULN": "1000000043", "NINumber": "AB123456C"},
            {"ULN": "", "NINumber": "AB123456C"},
        )
        assert [codes(row) for row in rows] == [[], ["DUP_01"], ["DUP_01"]]

    def test_different_date_or_course_is_not_a_duplicate(self) -> None:
        rows = self.run({}, {"AchievementDate": "13/11/2026"}, {"CourseCode": "SD-MSF-102"})
        assert all(row.issues == () for row in rows)

    def test_the_same_value_in_different_identifier_kinds_is_not_a_duplicate(self) -> None:
        rows = self.run(
            {"ULN": "", "CITBIndividualId": "AB123456C"},
            {"ULN": "", "NINumber": "AB123456C"},
        )
        assert all(row.issues == () for row in rows)

    def test_no_dup_01_when_the_later_rows_identifier_is_invalid(self) -> None:
        rows = self.run({"NINumber": "AB123456C"}, {"ULN": "1", "NINumber": "AB123456C"})
        assert codes(rows[1]) == ["ULN_01", "DUP_01"]
        rows = self.run({}, {"ULN": "1000000043", "CourseCode": "SD-XYZ-999"})
        assert codes(rows[1]) == ["COURSE_03"]

    def test_dup_01_on_a_warned_row_keeps_the_warning_and_makes_it_invalid(self) -> None:
        _, second = self.run({}, {"EmployerLevyNumber": ""})
        assert codes(second) == ["LEVY_03", "DUP_01"]
        assert not second.is_valid


class TestDuplicateIssue:
    def test_dup_01_and_dup_02_are_row_level_errors_with_fixed_messages(self) -> None:
        for code in (Code.DUP_01, Code.DUP_02):
            issue = duplicate_issue(9, code)
            assert issue.row == 9
            assert issue.column is None
            assert issue.severity is Severity.ERROR
            assert issue.code is code
        assert "earlier row of this file" in duplicate_issue(9, Code.DUP_01).message
        assert "earlier upload" in duplicate_issue(9, Code.DUP_02).message

    def test_other_codes_are_refused(self) -> None:
        with pytest.raises(ValueError, match="not a duplicate code"):
            duplicate_issue(2, Code.ID_01)

    def test_adding_dup_02_to_a_valid_row_invalidates_it(self) -> None:
        result = validate().with_row_issue(duplicate_issue(2, Code.DUP_02))
        assert not result.is_valid
        assert result.achievement is None
        assert codes(result) == ["DUP_02"]


class TestMessagesNeverEchoLearnerData:
    def test_no_message_contains_a_value_from_the_row(self) -> None:
        values = {
            "ProviderReference": "Zanzibar\x07Ref",
            "CourseCode": "QQ-ZANZIBAR-77",
            "AchievementDate": "31/02/2026",
            "LearnerForename": "Xanthippe9",
            "LearnerSurname": "Quixotic|Name",
            "DateOfBirth": "1987-13-45",
            "ULN": "7777777777",
            "NINumber": "QQ987654C",
            "CITBIndividualId": "ZZ-TOP",
            "EmployerLevyNumber": "K12345",
            "Notes": "Bellringer\x07notes",
        }
        result = validator().validate((2, [*cells(**values), "Extraordinary"]))
        assert result is not None
        assert len(result.issues) == 12  # every column plus ROW_01
        for issue in result.issues:
            for value in [*values.values(), "Extraordinary", "Zanzibar", "7777777777"]:
                assert value not in issue.message, (issue.code, value)

    def test_warnings_and_duplicates_do_not_echo_values_either(self) -> None:
        values = {
            "AchievementDate": "01/10/2026",
            "EmployerLevyNumber": "A7654321",
            "Notes": "=HYPERLINK(evil)",
            "ULN": "5555555554",
        }
        results = [validate(**values), validate(**values)]
        duplicates = InFileDuplicates()
        issues = [issue for result in results for issue in duplicates.apply(result).issues]
        assert {issue.code for issue in issues} >= {Code.ACHDATE_03, Code.LEVY_02, Code.NOTES_02}
        assert Code.DUP_01 in {issue.code for issue in issues}
        for issue in issues:
            assert not any(value in issue.message for value in values.values())
            assert "A7654321" not in issue.message
            assert "HYPERLINK" not in issue.message


def test_column_enum_values_are_the_template_headers() -> None:
    assert [column.value for column in Column] == list(VALID)
