"""The fuzzing corpus: every file in `corpus/fuzz/` gives a sound report, and its expected one.

The folder holds the hostile shapes the fuzzing properties (`test_scheme_fuzz.py`) generate, as
small fixed files, and the bytes of any example that ever failed there (kept with
`SCHEME_FUZZ_KEEP=tests/unit/scheme/corpus/fuzz`, named `fuzz-<hash>.csv`). Each file is checked
with the fuzzing invariants; a file with a `NAME.csv.expected.json` next to it must also give
exactly that JSON (upload date 2026-11-20, policy all_or_nothing).

After a deliberate change, rewrite the expected files with
`SCHEME_CORPUS_UPDATE=1 .venv/bin/pytest tests/unit/scheme/test_scheme_fuzz_corpus.py` and read
the diff; a kept failure gets its expected file the same way once it is fixed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from scheme_builders import UPLOAD_DATE
from test_scheme_fuzz import REFERENCE, assert_sound

from services.core.scheme.check import check_file
from services.core.scheme.codes import Policy

CORPUS = Path(__file__).parent / "corpus" / "fuzz"
FILES = sorted(CORPUS.glob("*.csv"))


def test_the_fuzz_corpus_is_there() -> None:
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_fuzz_corpus_file_gives_a_sound_and_expected_report(path: Path) -> None:
    report = check_file(path, today=UPLOAD_DATE, policy=Policy.ALL_OR_NOTHING, reference=REFERENCE)
    assert_sound(report, Policy.ALL_OR_NOTHING)
    actual = json.loads(report.to_json())
    expected_path = path.with_name(path.name + ".expected.json")
    if os.environ.get("SCHEME_CORPUS_UPDATE") == "1":
        expected_path.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n")
    if expected_path.exists():
        assert actual == json.loads(expected_path.read_text(encoding="utf-8"))
