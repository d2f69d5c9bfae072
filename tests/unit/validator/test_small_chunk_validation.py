"""A small chunk is judged by the row validator alone, and finds exactly what the two passes
find: the same rows, issues, counts, warnings and accepted values."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import pytest

from services.core.scheme.bulk_rules import BulkValidator
from services.core.scheme.codes import FileError
from services.core.scheme.file_inspection import Encoding
from services.core.scheme.record_scanner import read_chunk_bytes, scan_records
from services.core.scheme.records import detect_layout, path_opener
from services.core.scheme.reference import bundled_reference
from services.validator import chunk_validation
from services.validator.chunk_validation import ChunkResult, validate_chunk

HEADER = (
    "ProviderReference,CourseCode,AchievementDate,LearnerForename,LearnerSurname,DateOfBirth,"
    "ULN,NINumber,CITBIndividualId,EmployerLevyNumber,Notes"
)
UPLOAD_DATE = date(2026, 11, 20)
ROWS = (
    "REF-1,SD-WAH-101,12/11/2026,Amelia,Hartley,14/03/1990,1000000043,,,79049946,",
    # Spaces to trim, a lower-case course code, a note over two lines.
    'REF-2, sd-wah-101 ,2026-11-12, Oliver ,Jones,1991-04-02,1234567899,,,79049946,"two\r\nlines"',
    "",  # blank: skipped, not counted
    "REF-3,SD-WAH-101,12/11/2026,Isla,Brown,14/03/1990,1234567890,,,79049946,",  # ULN_02
    "REF-4,NO-SUCH-1,12/11/2026,Ava,Smith,01/01/1985,5555555554,,,79049946,",  # a course
    "REF-5,SD-WAH-101,31/02/2026,Noah,Taylor,14/03/1990,1111111110,,,,",  # a date, no levy
    '="REF-6",SD-WAH-101,12/11/2026,Mia,O\'Neill,14/03/1990,1234567805,,,79049946,note',
    "REF-7,SD-WAH-101,12/11/2026,Amelia,Hartley,14/03/1990,1000000043,,,79049946,",  # DUP_01
    ",,,,,,,,,,",  # blank too
)


def judged(tmp_path: Path, small_lines: int, monkeypatch: pytest.MonkeyPatch) -> ChunkResult:
    path = tmp_path / "upload.csv"
    path.write_bytes(("\r\n".join((HEADER, *ROWS)) + "\r\n").encode())
    opener = path_opener(path)
    layout = detect_layout(opener, Encoding.UTF_8)
    assert not isinstance(layout, FileError)
    assert not isinstance(layout.header, FileError)
    with opener() as stream:
        scan = scan_records(stream, layout.delimiter, encoding=Encoding.UTF_8)
    (chunk,) = scan.chunks
    segments = read_chunk_bytes(opener, Encoding.UTF_8, chunk.segments)
    monkeypatch.setattr(chunk_validation, "ROW_VALIDATOR_ONLY_LINES", small_lines)
    return validate_chunk(
        segments,
        layout.delimiter,
        BulkValidator(layout.header, UPLOAD_DATE, bundled_reference()),
        layout.header,
        upload_id=uuid.UUID(int=7),
        ato_id="ATO-1",
        issue_room=100,
    )


def test_a_small_chunk_judged_by_the_row_validator_finds_what_both_passes_find(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    both_passes = judged(tmp_path, 0, monkeypatch)
    row_validator = judged(tmp_path, 1_000, monkeypatch)

    assert row_validator.rows_total == both_passes.rows_total == 7
    assert row_validator.rows_invalid == both_passes.rows_invalid
    assert row_validator.rows_warned == both_passes.rows_warned
    assert row_validator.counts_by_code == both_passes.counts_by_code
    assert row_validator.issues == both_passes.issues
    assert row_validator.valid.equals(both_passes.valid)
    # The keys as stored, compared as tables: Arrow may lay the same values out differently
    # (a validity buffer present or not), so the bytes need not match.
    assert row_validator.all_keys().equals(both_passes.all_keys())
