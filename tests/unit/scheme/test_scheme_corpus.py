"""Every corpus file gives exactly its expected check result (upload date 2026-11-20).

Each `corpus/NAME.csv` has `corpus/NAME.csv.expected.json`: the JSON `achievements check
NAME.csv --today 2026-11-20 --json` prints (policy all_or_nothing). The pipeline's end-to-end
tests run the same files through the real services and compare with the same files.

After a deliberate change (a reworded message, say), rewrite the expected files with
`SCHEME_CORPUS_UPDATE=1 .venv/bin/pytest tests/unit/scheme/test_scheme_corpus.py` and read
the diff before committing it.
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import pytest

from services.core.scheme.check import check_file
from services.core.scheme.codes import Policy

CORPUS = Path(__file__).parent / "corpus"
UPLOAD_DATE = date(2026, 11, 20)
FILES = sorted(CORPUS.glob("*.csv"))


def test_the_corpus_is_there() -> None:
    assert len(FILES) >= 25
    missing = [f.name for f in FILES if not f.with_name(f.name + ".expected.json").exists()]
    assert missing == []


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_corpus_file_gives_its_expected_result(path: Path) -> None:
    report = check_file(path, today=UPLOAD_DATE, policy=Policy.ALL_OR_NOTHING)
    actual = json.loads(report.to_json())
    expected_path = path.with_name(path.name + ".expected.json")
    if os.environ.get("SCHEME_CORPUS_UPDATE") == "1":
        expected_path.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n")
    assert actual == json.loads(expected_path.read_text(encoding="utf-8"))
