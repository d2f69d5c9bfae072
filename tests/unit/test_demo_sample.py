"""`make run`'s sample passes today, and every run's learners are its own (no DUP_02 next time)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from services.core.scheme.check import check_file
from services.core.scheme.codes import UploadStatus
from services.demo import write_sample


def test_every_generated_sample_passes_with_learners_of_its_own(tmp_path: Path) -> None:
    today = date(2026, 11, 28)
    seen: set[str] = set()
    for run in range(25):
        sample = write_sample(tmp_path / str(run), today)
        report = check_file(sample, today=today)
        assert report.status is UploadStatus.PASSED, report.issues
        identifiers = {
            line.split(",")[6] + line.split(",")[7] + line.split(",")[8]
            for line in sample.read_text().splitlines()[1:]
        }
        assert not identifiers & seen
        seen |= identifiers
