"""Statuses (sections 6 and 8), the file-level precedence after reading, and issue order."""

from __future__ import annotations

import pytest

from services.core.scheme.codes import (
    MESSAGES,
    SEVERITY,
    Code,
    FileError,
    Policy,
    Severity,
    UploadStatus,
)
from services.core.scheme.columns import Column
from services.core.scheme.outcome import (
    accepts_rows,
    decide_status,
    file_error_after_reading,
    issue_position,
    sort_issues,
)
from services.core.scheme.validation import Issue

ALL = Policy.ALL_OR_NOTHING
SOME = Policy.VALID_ROWS


class TestDecideStatus:
    @pytest.mark.parametrize(
        ("policy", "total", "invalid", "warned", "expected"),
        [
            (ALL, 3, 0, 0, UploadStatus.PASSED),
            (SOME, 3, 0, 0, UploadStatus.PASSED),
            (ALL, 3, 0, 1, UploadStatus.PASSED_WITH_WARNINGS),
            (SOME, 3, 0, 3, UploadStatus.PASSED_WITH_WARNINGS),
            (ALL, 3, 1, 0, UploadStatus.FAILED),
            (ALL, 3, 1, 2, UploadStatus.FAILED),
            (SOME, 3, 1, 0, UploadStatus.PARTIALLY_ACCEPTED),
            (SOME, 3, 2, 1, UploadStatus.PARTIALLY_ACCEPTED),
            (SOME, 3, 3, 0, UploadStatus.FAILED),  # valid_rows with no valid row
            (ALL, 1, 1, 0, UploadStatus.FAILED),
        ],
    )
    def test_status_from_policy_and_counts(
        self, policy: Policy, total: int, invalid: int, warned: int, expected: UploadStatus
    ) -> None:
        assert decide_status(policy, total, invalid, warned, None) is expected

    @pytest.mark.parametrize("policy", list(Policy))
    def test_any_file_error_is_rejected(self, policy: Policy) -> None:
        assert decide_status(policy, 5, 0, 0, Code.FILE_07) is UploadStatus.REJECTED
        assert decide_status(policy, 0, 0, 0, Code.FILE_02) is UploadStatus.REJECTED

    def test_no_rows_without_a_file_error_is_a_caller_bug(self) -> None:
        with pytest.raises(ValueError, match="FILE_02"):
            decide_status(ALL, 0, 0, 0, None)

    def test_inconsistent_counts_are_refused(self) -> None:
        with pytest.raises(ValueError, match="counts"):
            decide_status(ALL, 2, 3, 0, None)
        with pytest.raises(ValueError, match="counts"):
            decide_status(ALL, 2, 1, 2, None)  # only valid rows count as warned

    def test_only_accepting_statuses_accept_rows(self) -> None:
        accepting = {status for status in UploadStatus if accepts_rows(status)}
        assert accepting == {
            UploadStatus.PASSED,
            UploadStatus.PASSED_WITH_WARNINGS,
            UploadStatus.PARTIALLY_ACCEPTED,
        }


class TestFileErrorAfterReading:
    unparseable = FileError(Code.FILE_01, "open quote")
    header = FileError(Code.FILE_04, "header")

    def test_unparseable_outranks_a_header_problem(self) -> None:
        error = file_error_after_reading(
            unparseable=self.unparseable, header=self.header, rows_total=0
        )
        assert error is self.unparseable

    def test_header_outranks_no_data(self) -> None:
        error = file_error_after_reading(unparseable=None, header=self.header, rows_total=0)
        assert error is self.header

    def test_no_non_blank_data_row_is_file_02(self) -> None:
        error = file_error_after_reading(unparseable=None, header=None, rows_total=0)
        assert error is not None
        assert error.code is Code.FILE_02

    def test_more_rows_than_the_limit_is_file_05(self) -> None:
        error = file_error_after_reading(unparseable=None, header=None, rows_total=11, row_limit=10)
        assert error is not None
        assert error.code is Code.FILE_05
        assert "10 data rows" in error.message

    def test_exactly_the_limit_is_allowed(self) -> None:
        assert (
            file_error_after_reading(unparseable=None, header=None, rows_total=10, row_limit=10)
            is None
        )

    def test_unparseable_outranks_the_row_limit(self) -> None:
        error = file_error_after_reading(
            unparseable=self.unparseable, header=None, rows_total=11, row_limit=10
        )
        assert error is self.unparseable


def issue(row: int, column: Column | None, code: Code) -> Issue:
    return Issue(row, column, code, SEVERITY[code], MESSAGES[code])


class TestIssueOrder:
    def test_by_row_then_template_column_then_row_level_codes_in_scheme_order(self) -> None:
        issues = [
            issue(3, None, Code.DUP_01),
            issue(3, Column.NOTES, Code.NOTES_02),
            issue(2, None, Code.ROW_01),
            issue(3, None, Code.ID_01),
            issue(2, Column.PROVIDER_REFERENCE, Code.REF_01),
            issue(10, Column.COURSE_CODE, Code.COURSE_01),
            issue(3, Column.ULN, Code.ULN_01),
            issue(2, None, Code.DUP_02),
        ]
        sort_issues(issues)
        assert [(i.row, i.code.value) for i in issues] == [
            (2, "REF_01"),
            (2, "ROW_01"),
            (2, "DUP_02"),
            (3, "ULN_01"),
            (3, "NOTES_02"),
            (3, "ID_01"),
            (3, "DUP_01"),
            (10, "COURSE_01"),
        ]

    def test_positions_put_every_row_level_code_after_every_column(self) -> None:
        last_column = issue_position(issue(2, Column.NOTES, Code.NOTES_01))
        row_level = [issue_position(issue(2, None, code)) for code in (Code.ID_01, Code.DUP_02)]
        assert all(position > last_column for position in row_level)


class TestSeverities:
    def test_the_four_warnings(self) -> None:
        warnings = {code for code in Code if SEVERITY[code] is Severity.WARNING}
        assert warnings == {Code.ACHDATE_03, Code.LEVY_02, Code.LEVY_03, Code.NOTES_02}
