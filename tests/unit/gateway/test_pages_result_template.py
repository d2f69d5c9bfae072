"""The result page: problems by type, the row counts, and advice that fits the outcome."""

from __future__ import annotations

from typing import Any

from page_context import page_context

from services.upload_gateway.issues import Issue, ReportSize
from services.upload_gateway.pages import texts
from services.upload_gateway.pages.site import templates

UPLOAD_ID = "0b5c3a9e-6a57-4d0e-9c1e-2f4f9a7d1b11"


def _render(status: str, issues: list[Issue], **overrides: Any) -> str:
    upload = {
        "upload_id": UPLOAD_ID,
        "status": status,
        "rows_total": 5,
        "rows_valid": 3,
        "rows_invalid": 2,
        "rows_warned": 1,
        "file_name": "june.csv",
        "message": "m",
    }
    context = page_context(
        title=texts.TITLES["result"],
        upload=upload,
        final=True,
        status_words=texts.STATUS_WORDS[status],
        issues=issues,
        report=ReportSize(len(issues), len(issues)),
        advice=False,
        column_letters={"ULN": "G", "EmployerLevyNumber": "J"},
        accepting=status in ("partially_accepted", "passed_with_warnings", "passed"),
        refresh_s=3,
        counted=True,
        next_steps=texts.NEXT_STEPS.get(status, ()),
        rows_to_fix=status == "partially_accepted",
    )
    context.update(overrides)
    return templates().get_template("result.html").render(**context)


ERROR = Issue(3, "ULN", "ULN_03", "error", "The ULN's check digit is wrong.", "******0044")
WARNING = Issue(4, "EmployerLevyNumber", "LEVY_03", "warning", "No levy number.", None)


def test_errors_and_warnings_carry_their_type_in_words_and_in_distinct_classes() -> None:
    html = _render("partially_accepted", [ERROR, WARNING])

    assert '<tr class="severity-error">' in html
    assert '<tr class="severity-warning">' in html
    assert '<strong class="tag severity-tag severity-error">Error</strong>' in html
    assert '<strong class="tag severity-tag severity-warning">Warning</strong>' in html
    assert '<th scope="col">Error or warning</th>' in html


def test_a_partly_accepted_upload_counts_its_rows_and_points_to_the_rows_to_fix() -> None:
    html = _render("partially_accepted", [ERROR])

    assert (
        '<strong class="tag status-tag status-partially_accepted">Partly accepted</strong>' in html
    )
    assert '<dd id="upload-rows">5</dd>' in html
    assert '<dd id="upload-rows-valid">3</dd>' in html
    assert '<dd id="upload-rows-invalid">2</dd>' in html
    assert '<dd id="upload-rows-warned">1</dd>' in html
    assert f'href="/ato/uploads/{UPLOAD_ID}/rows-to-fix.csv"' in html
    assert f'href="/ato/uploads/{UPLOAD_ID}/rows-to-fix.xlsx"' in html
    assert "refused as duplicates (DUP_02)" in html
    assert "upload the whole file again" not in html


def test_a_failed_upload_accepts_no_row_and_says_to_upload_the_whole_file_again() -> None:
    html = _render("failed", [ERROR])

    assert '<dd id="upload-rows-valid">0</dd>' in html
    assert (
        "Correct the rows listed under &#39;Problems found&#39; in your file, then upload" in html
    )
    assert "the whole file again." in html
    assert "rows-to-fix" not in html


def test_the_rows_to_fix_are_not_offered_to_someone_who_may_not_download_them() -> None:
    html = _render("partially_accepted", [ERROR], rows_to_fix=False)

    assert "rows-to-fix" not in html
    assert "Download the rows to fix:" in html  # the advice still says what the file is


def test_a_refused_file_shows_no_row_counts() -> None:
    html = _render("rejected", [], counted=False)

    assert 'id="upload-rows"' not in html
    assert '<strong class="tag status-tag status-rejected">Refused</strong>' in html
    assert 'id="next-steps"' not in html
