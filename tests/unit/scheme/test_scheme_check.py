"""`check_file`: the whole file, the file-level precedence, statuses, counts and the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scheme_builders import HEADERS, UPLOAD_DATE, VALID_ULNS, cells, csv_text, write

from services.core.scheme.check import CheckReport, check_file
from services.core.scheme.codes import Policy, UploadStatus
from services.core.scheme.reference import InMemoryReference, bundled_reference


def check(path: Path, **options: object) -> CheckReport:
    return check_file(path, today=UPLOAD_DATE, **options)  # type: ignore[arg-type]


def file_code(report: CheckReport) -> str:
    assert report.status is UploadStatus.REJECTED
    assert len(report.file_errors) == 1
    return report.file_errors[0].code.value


@pytest.fixture
def mixed_file(tmp_path: Path) -> Path:
    """Two valid rows (one warned), one invalid row with a warning too."""
    rows = [
        cells(ULN=VALID_ULNS[0]),
        cells(ULN=VALID_ULNS[1], EmployerLevyNumber=""),
        cells(ULN="1234567890", Notes="=x"),
    ]
    return write(tmp_path, "mixed.csv", csv_text(rows))


class TestStatusesAndCounts:
    def test_all_or_nothing_with_an_invalid_row_fails(self, mixed_file: Path) -> None:
        report = check(mixed_file)
        assert report.status is UploadStatus.FAILED
        assert (report.rows_total, report.rows_valid, report.rows_invalid) == (3, 2, 1)
        assert report.rows_warned == 1  # the invalid row's warning is reported, not counted
        assert [issue.code.value for issue in report.issues] == ["LEVY_03", "ULN_03", "NOTES_02"]

    def test_valid_rows_with_an_invalid_row_is_partially_accepted(self, mixed_file: Path) -> None:
        report = check(mixed_file, policy=Policy.VALID_ROWS)
        assert report.status is UploadStatus.PARTIALLY_ACCEPTED
        assert report.rows_valid == 2
        assert report.exit_code == 0

    def test_valid_rows_with_no_valid_row_fails(self, tmp_path: Path) -> None:
        path = write(tmp_path, "bad.csv", csv_text([cells(ULN="1"), cells(CourseCode="")]))
        report = check(path, policy=Policy.VALID_ROWS)
        assert report.status is UploadStatus.FAILED
        assert report.rows_valid == 0
        assert report.exit_code == 1

    def test_every_row_valid_with_a_warning_passes_with_warnings(self, tmp_path: Path) -> None:
        path = write(tmp_path, "w.csv", csv_text([cells(), cells(ULN=VALID_ULNS[1], Notes="+1")]))
        for policy in Policy:
            report = check(path, policy=policy)
            assert report.status is UploadStatus.PASSED_WITH_WARNINGS
            assert report.rows_warned == 1

    def test_every_row_valid_without_warnings_passes(self, tmp_path: Path) -> None:
        path = write(tmp_path, "ok.csv", csv_text([cells(ULN=uln) for uln in VALID_ULNS]))
        report = check(path)
        assert report.status is UploadStatus.PASSED
        assert (report.rows_total, report.rows_valid, report.issues) == (8, 8, [])
        assert report.exit_code == 0

    def test_blank_rows_are_not_counted(self, tmp_path: Path) -> None:
        text = csv_text([cells(), [], [""] * 11, cells(ULN=VALID_ULNS[1])])
        report = check(write(tmp_path, "b.csv", text))
        assert report.rows_total == 2

    def test_the_reference_data_passed_in_is_the_one_used(self, tmp_path: Path) -> None:
        path = write(tmp_path, "r.csv", csv_text([cells()]))
        empty = InMemoryReference([], bundled_reference().employers())
        assert [issue.code.value for issue in check(path, reference=empty).issues] == ["COURSE_03"]

    def test_issues_are_ordered_by_row_then_column_then_row_level(self, tmp_path: Path) -> None:
        rows = [
            [*cells(ULN="", Notes="=x", ProviderReference="R" * 51), "extra"],
            cells(ULN=VALID_ULNS[0], LearnerForename=""),
            cells(ULN=VALID_ULNS[0]),
        ]
        report = check(write(tmp_path, "o.csv", csv_text(rows)))
        assert [(i.row, i.code.value) for i in report.issues] == [
            (2, "REF_01"),
            (2, "NOTES_02"),
            (2, "ID_01"),
            (2, "ROW_01"),
            (3, "NAME_01"),
            (4, "DUP_01"),
        ]


class TestFilePrecedence:
    def test_size_is_checked_first_without_reading_the_file(self, tmp_path: Path) -> None:
        path = write(tmp_path, "big.csv", b"\x00" * 101)
        report = check(path, size_limit_bytes=100)
        assert file_code(report) == "FILE_03"
        assert report.encoding is None

    def test_the_default_size_limit_is_200_mib(self, tmp_path: Path) -> None:
        path = tmp_path / "sparse.csv"
        with path.open("wb") as out:
            out.truncate(200 * 1024 * 1024 + 1)  # sparse: no real disk use
        assert file_code(check(path)) == "FILE_03"

    def test_workbook_outranks_decoding_and_emptiness(self, tmp_path: Path) -> None:
        assert (
            file_code(check(write(tmp_path, "x.csv", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x81")))
            == "FILE_01"
        )

    def test_decoding_outranks_everything_after_it(self, tmp_path: Path) -> None:
        text = csv_text([cells()], header=["Nope"]) + '"open'
        assert file_code(check(write(tmp_path, "x.csv", text.encode() + b"\x81\xe9"))) == "FILE_06"

    def test_open_quote_outranks_a_bad_header(self, tmp_path: Path) -> None:
        text = csv_text([cells()], header=["Nope"]) + '"open\r\n'
        assert file_code(check(write(tmp_path, "x.csv", text))) == "FILE_01"

    def test_bad_header_outranks_no_data(self, tmp_path: Path) -> None:
        assert file_code(check(write(tmp_path, "x.csv", "Nope\r\n"))) == "FILE_04"

    def test_header_with_only_blank_rows_is_file_02(self, tmp_path: Path) -> None:
        path = write(tmp_path, "x.csv", csv_text([[], [" "] * 11]))
        assert file_code(check(path)) == "FILE_02"

    def test_more_rows_than_the_limit_is_file_05(self, tmp_path: Path) -> None:
        rows = [cells(ULN=uln) for uln in VALID_ULNS[:4]]
        path = write(tmp_path, "x.csv", csv_text(rows))
        assert file_code(check(path, row_limit=3)) == "FILE_05"
        assert check(path, row_limit=4).status is UploadStatus.PASSED

    def test_blank_rows_do_not_count_towards_the_row_limit(self, tmp_path: Path) -> None:
        rows = [cells(ULN=VALID_ULNS[0]), [], [], [], cells(ULN=VALID_ULNS[1])]
        path = write(tmp_path, "x.csv", csv_text(rows))
        assert check(path, row_limit=2).status is UploadStatus.PASSED

    def test_open_quote_after_the_row_limit_still_outranks_it(self, tmp_path: Path) -> None:
        rows = [cells(ULN=uln) for uln in VALID_ULNS[:4]]
        path = write(tmp_path, "x.csv", csv_text(rows) + 'x,"open')
        assert file_code(check(path, row_limit=2)) == "FILE_01"

    def test_a_rejected_file_reports_zero_counts_and_no_issues(self, tmp_path: Path) -> None:
        rows = [cells(ULN="1"), cells(ULN="2"), cells(ULN="3")]
        report = check(write(tmp_path, "x.csv", csv_text(rows)), row_limit=2)
        assert report.status is UploadStatus.REJECTED
        assert (report.rows_total, report.rows_valid, report.rows_invalid) == (0, 0, 0)
        assert report.rows_warned == 0
        assert report.issues == []
        assert report.exit_code == 1

    def test_semicolon_file_is_validated_like_a_comma_file(self, tmp_path: Path) -> None:
        text = ";".join(HEADERS) + "\r\n" + ";".join(cells(Notes="a, b")) + "\r\n"
        report = check(write(tmp_path, "s.csv", text))
        assert report.status is UploadStatus.PASSED


class TestJson:
    def test_keys_and_order_are_those_of_section_7(self, mixed_file: Path) -> None:
        document = json.loads(check(mixed_file).to_json())
        assert list(document) == [
            "file_name",
            "encoding",
            "status",
            "rows_total",
            "rows_valid",
            "rows_invalid",
            "rows_warned",
            "file_errors",
            "issues",
        ]
        assert document["file_name"] == "mixed.csv"
        assert document["encoding"] == "utf-8"
        assert document["issues"][1] == {
            "row": 4,
            "column": "ULN",
            "code": "ULN_03",
            "severity": "error",
            "message": document["issues"][1]["message"],
        }

    def test_row_level_issues_have_a_null_column(self, tmp_path: Path) -> None:
        path = write(tmp_path, "x.csv", csv_text([cells(ULN="")]))
        issue = json.loads(check(path).to_json())["issues"][0]
        assert issue["column"] is None
        assert issue["code"] == "ID_01"

    def test_file_errors_are_code_and_message_objects(self, tmp_path: Path) -> None:
        document = json.loads(check(write(tmp_path, "x.csv", b"")).to_json())
        assert document["status"] == "rejected"
        assert document["file_errors"] == [{"code": "FILE_02", "message": "The file is empty."}]
        assert document["issues"] == []

    def test_file_name_is_the_base_name_only(self, tmp_path: Path) -> None:
        folder = tmp_path / "private" / "folder"
        folder.mkdir(parents=True)
        path = write(folder, "june.csv", csv_text([cells()]))
        assert json.loads(check(path).to_json())["file_name"] == "june.csv"


class TestSkippedOffline:
    def test_checking_the_same_bytes_twice_is_never_file_07(self, tmp_path: Path) -> None:
        path = write(tmp_path, "again.csv", csv_text([cells()]))
        reports = [check(path), check(path)]
        assert [report.status for report in reports] == [UploadStatus.PASSED] * 2
        assert all(report.file_errors == [] for report in reports)

    def test_dup_02_is_never_reported_offline(self, tmp_path: Path) -> None:
        rows = [cells(ULN=uln) for uln in VALID_ULNS]
        codes = {
            issue.code.value for issue in check(write(tmp_path, "x.csv", csv_text(rows))).issues
        }
        assert "DUP_02" not in codes
        assert "FILE_07" not in codes


def test_the_report_parses_back_from_its_json(mixed_file: Path) -> None:
    report = check(mixed_file)
    assert CheckReport.model_validate_json(report.to_json()) == report
