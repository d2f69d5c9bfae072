"""The grant system's own course catalogue and levy register, read from CSV files.

Another team's system keeps its own reference data, so the stand-in reads its own copy (the
`reference/` folder next to this module, or a folder named in the settings) instead of the
pipeline's tables: a catalogue that drifts from the pipeline's is a real-world case.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

_BUNDLED_PACKAGE = "services.grant_standin.reference"


@dataclass(frozen=True, slots=True)
class Course:
    code: str
    grant_pence: int


@dataclass(frozen=True, slots=True)
class Employer:
    levy_number: str
    grant_eligible: bool


class Catalogue:
    """Courses by code and employers by levy number, both looked up upper-cased."""

    def __init__(self, courses: list[Course], employers: list[Employer]) -> None:
        self._courses = {c.code.upper(): c for c in courses}
        self._employers = {e.levy_number.upper(): e for e in employers}

    def course(self, code: str) -> Course | None:
        return self._courses.get(code.strip().upper())

    def employer(self, levy_number: str) -> Employer | None:
        return self._employers.get(levy_number.strip().upper())


def _courses(text: str) -> list[Course]:
    return [
        Course(code=row["code"].strip(), grant_pence=int(row["grant_pence"]))
        for row in csv.DictReader(io.StringIO(text))
    ]


def _employers(text: str) -> list[Employer]:
    return [
        Employer(
            levy_number=row["levy_number"].strip(),
            grant_eligible=row["grant_eligible"].strip().lower() == "true",
        )
        for row in csv.DictReader(io.StringIO(text))
    ]


def load_catalogue(folder: Path | None = None) -> Catalogue:
    """Reads `courses.csv` and `employers.csv` from `folder`, or the bundled copy."""
    if folder is None:
        bundled = resources.files(_BUNDLED_PACKAGE)
        courses_text = bundled.joinpath("courses.csv").read_text(encoding="utf-8")
        employers_text = bundled.joinpath("employers.csv").read_text(encoding="utf-8")
    else:
        courses_text = (folder / "courses.csv").read_text(encoding="utf-8")
        employers_text = (folder / "employers.csv").read_text(encoding="utf-8")
    return Catalogue(_courses(courses_text), _employers(employers_text))
