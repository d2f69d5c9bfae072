"""Reference data: the bundled copy, loading a folder, the in-memory snapshot."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from services.core.scheme.reference import (
    Course,
    Employer,
    InMemoryReference,
    ReferenceDataError,
    bundled_reference,
    load_reference_dir,
)

BUNDLED = Path(__file__).parents[3] / "services/core/scheme/reference_data"


def test_bundled_reference_has_the_catalogue_and_the_register() -> None:
    reference = bundled_reference()
    assert len(list(reference.courses())) == 40
    assert len(list(reference.employers())) == 240
    assert reference.course("SD-MHA-106") == Course(
        code="SD-MHA-106",
        title="Manual handling",
        tier=3,
        duration_hours=30,
        grant_pence=24000,
        valid_from=date(2018, 4, 1),
        valid_to=date(2024, 3, 31),
    )
    assert reference.employer("G719507518") == Employer(
        "G719507518", "Tamworth Scaffolding Ltd", grant_eligible=False
    )


def test_loading_a_folder_gives_the_same_data_as_the_bundled_copy() -> None:
    loaded = load_reference_dir(BUNDLED)
    bundled = bundled_reference()
    assert list(loaded.courses()) == list(bundled.courses())
    assert list(loaded.employers()) == list(bundled.employers())


def test_register_levy_numbers_are_normalised_like_the_column(tmp_path: Path) -> None:
    (tmp_path / "courses.csv").write_text(
        "code,title,tier,duration_hours,grant_pence,valid_from,valid_to\n"
        "sd-x-1,X,1,2,300,2020-01-01,\n"
    )
    (tmp_path / "employers.csv").write_text(
        "levy_number,employer_name,grant_eligible\nm 128/61-01,Northgate,TRUE\n"
    )
    reference = load_reference_dir(tmp_path)
    employer = reference.employer("M1286101")
    assert employer is not None
    assert employer.grant_eligible
    course = reference.course("SD-X-1")
    assert course is not None
    assert course.valid_to is None


def test_a_malformed_reference_file_names_the_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "courses.csv").write_text(
        "code,title,tier,duration_hours,grant_pence,valid_from,valid_to\n"
        "A1,X,1,2,300,2020-01-01,\nA2,X,one,2,300,2020-01-01,\n"
    )
    (tmp_path / "employers.csv").write_text("levy_number,employer_name,grant_eligible\n")
    with pytest.raises(ReferenceDataError, match=re.escape("courses.csv line 3")):
        load_reference_dir(tmp_path)


def test_grant_eligible_must_be_true_or_false(tmp_path: Path) -> None:
    (tmp_path / "courses.csv").write_text(
        "code,title,tier,duration_hours,grant_pence,valid_from,valid_to\n"
    )
    (tmp_path / "employers.csv").write_text(
        "levy_number,employer_name,grant_eligible\n1234567,X,yes\n"
    )
    with pytest.raises(ReferenceDataError, match=re.escape("employers.csv line 2")):
        load_reference_dir(tmp_path)


def test_in_memory_reference_answers_none_for_unknown_keys() -> None:
    reference = InMemoryReference([], [])
    assert reference.course("SD-WAH-101") is None
    assert reference.employer("79049946") is None


def test_approval_period_without_an_end_is_open() -> None:
    course = bundled_reference().course("SD-WAH-101")
    assert course is not None
    assert course.approved_on(date(2099, 1, 1))
    assert not course.approved_on(date(2018, 3, 31))
