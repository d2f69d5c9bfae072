"""The error report's masking: identifiers keep just enough to find the row, personal data is
hidden entirely, and empty cells show nothing."""

from __future__ import annotations

import pytest

from services.core.masking import mask_value


@pytest.mark.parametrize(
    ("column", "value", "masked"),
    [
        ("NINumber", "AB123456C", "AB****56C"),
        ("ULN", "1234567899", "12*****899"),
        ("CITBIndividualId", "CITB12345", "CI****345"),
        ("CITBIndividualId", "AB1234", "AB*234"),
    ],
)
def test_identifiers_keep_their_first_two_and_last_three_characters(
    column: str, value: str, masked: str
) -> None:
    assert mask_value(column, value) == masked
    assert len(masked) == len(value)


@pytest.mark.parametrize("value", ["AB12C", "1", "12345"])
def test_short_identifiers_are_masked_entirely(value: str) -> None:
    # Showing five of five characters (or fewer) would show the whole value.
    assert mask_value("ULN", value) == "*" * len(value)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("LearnerForename", "Zebedee"),
        ("LearnerSurname", "Quenby-Fotheringham"),
        ("DateOfBirth", "17/05/1963"),
        ("DateOfBirth", "1963-05-17"),
        ("Notes", "Secret-note-4471 about the learner's health"),
    ],
)
def test_names_dates_of_birth_and_notes_are_masked_entirely(column: str, value: str) -> None:
    masked = mask_value(column, value)
    assert masked is not None
    assert set(masked) == {"*"}
    assert len(masked) == min(len(value), 8)  # a long value's length is not given away


@pytest.mark.parametrize("value", ["", "   ", "\t\r\n"])
@pytest.mark.parametrize("column", ["ULN", "LearnerForename", "CourseCode"])
def test_empty_cells_mask_to_none(column: str, value: str) -> None:
    assert mask_value(column, value) is None


def test_a_row_level_issue_without_a_column_shows_no_value() -> None:
    assert mask_value(None, "AB123456C") is None


def test_surrounding_white_space_does_not_shift_what_is_shown() -> None:
    assert mask_value("NINumber", "  AB123456C \t") == "AB****56C"


def test_other_columns_show_the_value_trimmed_and_cut_at_sixty_characters() -> None:
    assert mask_value("CourseCode", " SD-WAH-999 ") == "SD-WAH-999"
    assert mask_value("ProviderReference", "R" * 80) == "R" * 60
