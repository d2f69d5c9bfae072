"""DUP_01 across a file from the keys its chunks stored; what marking rows does to the counts."""

from __future__ import annotations

import polars as pl
import pytest

from services.validator import duplicate_keys
from services.validator.duplicate_keys import KEYS_SCHEMA, Marked

NOTHING = (0, 0, 0, [], [], [])


def counted(marking: Marked) -> tuple[int, int, int, list[int], list[int], list[int]]:
    """(rows, newly invalid, warned lost, first rows, rows that were valid, every row)."""
    return (
        marking.rows,
        marking.newly_invalid,
        marking.warned_lost,
        marking.first_rows,
        marking.were_valid.to_list(),
        marking.all_rows.to_list(),
    )


def stored(*rows: tuple[int, str, bool, bool, bool]) -> bytes:
    """A chunk's stored keys from (row, key, is_valid, has_warning, dup_02) rows."""
    return duplicate_keys.to_stored(pl.DataFrame(list(rows), schema=KEYS_SCHEMA, orient="row"))


A = "SD-WAH-101|2026-11-02|uln|9999999999"
B = "SD-WAH-101|2026-11-02|ni_number|AB123456C"
C = "SD-MSF-102|2026-10-30|uln|9999999999"


def test_stored_keys_read_back_as_they_were() -> None:
    read = duplicate_keys.from_stored(stored((2, A, True, False, False), (3, B, False, True, True)))

    assert read.schema == KEYS_SCHEMA
    assert read.rows() == [(2, A, True, False, False), (3, B, False, True, True)]


def test_every_row_after_the_first_with_a_key_is_a_duplicate_even_when_the_first_is_invalid() -> (
    None
):
    # Row 4 repeats row 2 (invalid for another reason) in another chunk; row 9 repeats row 4
    # through another key; row 6 shares nothing (the same ULN, another course); row 12 was a
    # repeat within its chunk already (stored invalid): counted here, once.
    chunks = [
        stored((9, B, True, False, False), (6, C, True, False, False)),
        stored((2, A, False, False, False), (12, A, False, True, False)),
        stored((4, A, True, True, False), (4, B, True, True, False)),
    ]

    assert counted(duplicate_keys.in_file_duplicates(chunks, limit=2)) == (
        3,
        2,
        1,
        [4, 9],
        [4, 9],
        [4, 9, 12],
    )


def test_no_repeated_key_marks_nothing() -> None:
    chunks = [stored((2, A, True, False, False)), stored((3, B, True, False, False))]

    assert counted(duplicate_keys.in_file_duplicates(chunks, limit=10)) == NOTHING
    assert counted(duplicate_keys.in_file_duplicates([], limit=10)) == NOTHING


def test_a_file_of_one_learner_repeated_marks_every_row_but_the_first() -> None:
    chunks = [
        stored(*((row, A, True, row % 2 == 0, False) for row in range(start, start + 50)))
        for start in (2, 52, 102)
    ]

    marking = duplicate_keys.in_file_duplicates(chunks, limit=3)

    assert (marking.rows, marking.newly_invalid, marking.warned_lost) == (149, 149, 74)
    assert marking.first_rows == [3, 4, 5]


def test_dup_02_re_checks_rows_it_has_not_marked_with_dup_01_rows_no_longer_valid() -> None:
    chunk = duplicate_keys.from_stored(
        stored((4, A, True, True, False), (8, B, True, False, False), (9, C, True, False, True))
    )

    unchecked = duplicate_keys.not_yet_marked_by_dup_02(
        chunk, invalid_rows=pl.Series([4], dtype=pl.Int32)
    )

    assert unchecked.rows() == [(4, A, False, True, False), (8, B, True, False, False)]
    assert counted(duplicate_keys.summarise(unchecked, limit=10)) == (2, 1, 0, [4, 8], [8], [4, 8])


def test_more_repeats_than_one_pass_holds_are_found_in_several_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(duplicate_keys, "_REPEATS_PER_PASS", 2)
    # Five keys each twice, the repeats in the second chunk: five passes' worth at two a pass.
    first = stored(*((row, f"K|{row}", True, False, False) for row in range(2, 7)))
    second = stored(*((row + 10, f"K|{row}", True, row == 3, False) for row in range(2, 7)))

    assert counted(duplicate_keys.in_file_duplicates([first, second], limit=3)) == (
        5,
        5,
        1,
        [12, 13, 14],
        [12, 13, 14, 15, 16],
        [12, 13, 14, 15, 16],
    )


def test_row_numbers_go_to_postgresql_as_one_text() -> None:
    assert duplicate_keys.as_array_text(pl.Series([3, 12, 40], dtype=pl.Int32)) == "3,12,40"
    assert duplicate_keys.as_array_text(pl.Series([], dtype=pl.Int32)) == ""
