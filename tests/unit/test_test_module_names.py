"""No two test modules share a file name: the test folders are not packages, so pytest imports
each module by its name, and a run that collects every folder (the tier-2 run) could not
import both."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_has_a_name_of_its_own() -> None:
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
