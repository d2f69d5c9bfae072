"""The pipeline gives every corpus file the same answer as the offline check: one code, two
places to run it. DUP_01 runs over stored keys here and in memory there."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest
from pipeline_helpers import validate_stored

CORPUS = Path(__file__).parents[2] / "unit" / "scheme" / "corpus"


@pytest.mark.parametrize(
    "name", sorted(p.name for p in CORPUS.glob("*.csv")), ids=lambda n: n.removesuffix(".csv")
)
async def test_pipeline_agrees_with_the_offline_check(
    name: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    expected = json.loads((CORPUS / f"{name}.expected.json").read_text())
    upload = await validate_stored(pool, tmp_path, (CORPUS / name).read_bytes())

    assert upload["status"] == expected["status"]
    assert upload["encoding"] == expected["encoding"]
    for count in ("rows_total", "rows_valid", "rows_invalid", "rows_warned"):
        assert upload[count] == expected[count], count
    assert [e["code"] for e in expected["file_errors"]] == (
        [upload["file_error_code"]] if upload["file_error_code"] else []
    )
    assert upload["issues"] == expected["issues"]
    expected_counts: dict[str, int] = {}
    for issue in expected["issues"]:
        expected_counts[issue["code"]] = expected_counts.get(issue["code"], 0) + 1
    assert upload["counts_by_code"] == expected_counts
