"""Achievement ids: the upload id's first 12 bytes, then the row number, by column."""

from __future__ import annotations

import uuid

import polars as pl

from services.validator.chunk_validation import achievement_id, achievement_ids

UPLOAD = uuid.UUID("12345678-1234-4234-8234-123456789abc")


def test_ids_by_column_are_the_upload_prefix_and_the_row_number_in_hex() -> None:
    rows = pl.DataFrame({"row_number": [2, 255, 65_536, 0xFEDCBA98]})

    ids = rows.select(achievement_ids(UPLOAD)).to_series().to_list()

    assert ids == [
        "12345678-1234-4234-8234-123400000002",
        "12345678-1234-4234-8234-1234000000ff",
        "12345678-1234-4234-8234-123400010000",
        "12345678-1234-4234-8234-1234fedcba98",
    ]
    assert ids[0] == str(achievement_id(UPLOAD, 2))
