"""A report over its cap keeps exactly the first issues of the file in the scheme's order (by
row, then template column order, row-level codes last; sections 7 and 8), the same on every run.

Before this was fixed each chunk kept the first issues it found, and the bulk pass finds the
warnings of valid rows before the row validator explains the rows in error: a chunk's later
warnings crowded out its earlier errors, and what was kept changed with the chunk bounds."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from pipeline_helpers import UPLOAD_DATE, validate_stored

from services.core.scheme.check import check_file

HEADER = (
    "ProviderReference,CourseCode,AchievementDate,LearnerForename,LearnerSurname,DateOfBirth,"
    "ULN,NINumber,CITBIndividualId,EmployerLevyNumber,Notes"
)


def _uln(body: str) -> str:
    """`body` (9 digits) with its check digit (scheme section 3.1)."""
    total = sum(int(digit) * weight for digit, weight in zip(body, range(10, 1, -1), strict=True))
    check = 10 - total % 11
    return body + str(check) if check < 10 else ""


def _learners(count: int) -> list[str]:
    """`count` valid ULNs (check digit right): one per learner, so only the rows meant to
    repeat an achievement do."""
    bodies = (f"{n:09d}" for n in range(100000000, 100000000 + 2 * count))
    return [uln for body in bodies if (uln := _uln(body))][:count]


def _row(number: int, uln: str) -> str:
    """Rows as a spreadsheet writes them: names with accents, notes quoted for a comma, a
    doubled quote or a line break; every third row has only a warning, the others errors."""
    kind = number % 6
    forename = "Zoë" if number % 2 else "Amelia"
    surname = '"O\'Brien, Siân"' if number % 5 == 0 else "Hartley"
    notes = ('"PO 4471, cohort B"', '"said ""thanks"""', '"line one\nline two"', "")[number % 4]
    if kind == 0:  # valid, two warnings: an old achievement date, no levy number
        return f"REF{number},SD-WAH-101,01/10/2026,{forename},{surname},14/03/1990,{uln},,,,{notes}"
    if kind == 1:  # valid, a warning: a formula start in the notes
        return (
            f"REF{number},SD-WAH-101,12/11/2026,{forename},{surname},14/03/1990,{uln},,,"
            f"79049946,=SUM(A1)"
        )
    if kind == 2:  # errors in two columns and a warning: a check digit, under 15
        return (
            f"REF{number},SD-WAH-101,12/11/2026,{forename},{surname},14/03/2020,"
            f"{uln[:-1]}{(int(uln[-1]) + 1) % 10},,,,{notes}"
        )
    if kind == 3:  # no identifier at all (row-level ID_01) and a future date
        return f"REF{number},SD-WAH-101,12/12/2026,{forename},{surname},14/03/1990,,,,79049946,"
    if kind == 4:  # the same achievement as the kind-0 row four rows up: DUP_01
        return f"REF{number},SD-WAH-101,01/10/2026,{forename},{surname},14/03/1990,{uln},,,,"
    return f"REF{number},SD-WAH-101,12/11/2026,{forename},{surname},xx/03/1990,{uln},,,79049946,"


def _file(rows_total: int) -> bytes:
    learners = _learners(rows_total + 2)
    rows = []
    for number in range(2, rows_total + 2):
        # A kind-4 row repeats the kind-0 row four rows up (DUP_01, across a chunk bound for
        # some of them).
        uln = learners[(number - 4) % len(learners)] if number % 6 == 4 else learners[number]
        rows.append(_row(number, uln))
    return ("\r\n".join((HEADER, *rows)) + "\r\n").encode()


def _offline_issues(tmp_path: Path, content: bytes) -> list[dict[str, object]]:
    path = tmp_path / "offline.csv"
    path.write_bytes(content)
    report = check_file(path, today=UPLOAD_DATE)
    return [
        {
            "row": issue.row,
            "column": None if issue.column is None else str(issue.column),
            "code": issue.code.value,
            "severity": issue.severity.value,
            "message": issue.message,
        }
        for issue in report.issues
    ]


async def test_a_report_over_its_cap_is_the_offline_checks_first_issues(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    content = _file(180)
    offline = _offline_issues(tmp_path, content)
    cap = 97
    # The cap must bite, and warnings and errors must both be among the first issues.
    assert len(offline) > 3 * cap
    assert {"warning", "error"} <= {issue["severity"] for issue in offline[:cap]}
    assert {"ID_01", "DUP_01", "ULN_03", "DOB_02", "ACHDATE_03"} <= {
        issue["code"] for issue in offline
    }

    for run, chunk_rows in enumerate((17, 40, 20_000)):
        upload = await validate_stored(
            pool,
            tmp_path / f"run-{run}",
            content,
            max_stored_issues=cap,
            chunk_rows=chunk_rows,
        )
        assert upload["issues"] == offline[:cap], f"chunks of {chunk_rows} rows"
        assert sum(upload["counts_by_code"].values()) == len(offline)


async def test_an_upload_over_the_default_cap_stores_the_first_ten_thousand_issues(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    content = _file(6000)
    offline = _offline_issues(tmp_path, content)
    assert len(offline) > 10_000

    upload = await validate_stored(pool, tmp_path / "upload", content, chunk_rows=1000)

    assert upload["issues"] == offline[:10_000]
    assert sum(upload["counts_by_code"].values()) == len(offline)
