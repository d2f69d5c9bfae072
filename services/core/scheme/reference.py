"""Reference data the rules read: the course catalogue and the levy register (section 4)."""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Protocol

from services.core.scheme.text import normalise_levy_number

COURSES_FILE = "courses.csv"
EMPLOYERS_FILE = "employers.csv"


@dataclass(frozen=True, slots=True)
class Course:
    code: str
    title: str
    tier: int
    duration_hours: int
    grant_pence: int
    valid_from: date
    valid_to: date | None  # None: still approved

    def approved_on(self, day: date) -> bool:
        """Both ends of the approval period are inclusive."""
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)


@dataclass(frozen=True, slots=True)
class Employer:
    levy_number: str  # normalised as the column is: upper-case, no white space, `/` or `-`
    employer_name: str
    grant_eligible: bool


class ReferenceData(Protocol):
    def course(self, code: str) -> Course | None: ...

    def employer(self, levy_number: str) -> Employer | None: ...


class InMemoryReference:
    """A snapshot of both tables: a few hundred rows, read at dictionary speed."""

    def __init__(self, courses: Iterable[Course], employers: Iterable[Employer]) -> None:
        self._courses = {course.code.upper(): course for course in courses}
        self._employers = {
            normalise_levy_number(employer.levy_number): employer for employer in employers
        }

    def course(self, code: str) -> Course | None:
        """`code` is the normalised (upper-cased) course code."""
        return self._courses.get(code)

    def employer(self, levy_number: str) -> Employer | None:
        """`levy_number` is normalised with `normalise_levy_number`."""
        return self._employers.get(levy_number)

    def courses(self) -> Iterator[Course]:
        return iter(self._courses.values())

    def employers(self) -> Iterator[Employer]:
        return iter(self._employers.values())


class ReferenceDataError(ValueError):
    """A reference CSV is malformed; the message names the file and line, never a learner."""


def parse_courses(text: str, source: str = COURSES_FILE) -> list[Course]:
    courses = []
    for line, row in _rows(text, source):
        try:
            courses.append(
                Course(
                    code=row["code"].strip().upper(),
                    title=row["title"].strip(),
                    tier=int(row["tier"]),
                    duration_hours=int(row["duration_hours"]),
                    grant_pence=int(row["grant_pence"]),
                    valid_from=date.fromisoformat(row["valid_from"].strip()),
                    valid_to=date.fromisoformat(row["valid_to"].strip())
                    if row["valid_to"].strip()
                    else None,
                )
            )
        except (KeyError, ValueError, AttributeError) as error:
            raise ReferenceDataError(f"{source} line {line}: {error}") from error
    return courses


def parse_employers(text: str, source: str = EMPLOYERS_FILE) -> list[Employer]:
    employers = []
    for line, row in _rows(text, source):
        try:
            eligible = row["grant_eligible"].strip().lower()
            if eligible not in ("true", "false"):
                raise ValueError("grant_eligible must be true or false")
            employers.append(
                Employer(
                    levy_number=normalise_levy_number(row["levy_number"]),
                    employer_name=row["employer_name"].strip(),
                    grant_eligible=eligible == "true",
                )
            )
        except (KeyError, ValueError, AttributeError) as error:
            raise ReferenceDataError(f"{source} line {line}: {error}") from error
    return employers


def _rows(text: str, source: str) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    for row in reader:
        if any(value and value.strip() for value in row.values()):
            yield reader.line_num, row
    if reader.fieldnames is None:
        raise ReferenceDataError(f"{source} is empty")


def load_reference_dir(folder: Path | str) -> InMemoryReference:
    """Reads `courses.csv` and `employers.csv` from a folder (UTF-8)."""
    folder = Path(folder)
    return InMemoryReference(
        parse_courses((folder / COURSES_FILE).read_text(encoding="utf-8"), COURSES_FILE),
        parse_employers((folder / EMPLOYERS_FILE).read_text(encoding="utf-8"), EMPLOYERS_FILE),
    )


@functools.cache
def bundled_reference() -> InMemoryReference:
    """The copy of the reference data shipped with the package (what the offline check uses)."""
    data = resources.files("services.core.scheme.reference_data")
    return InMemoryReference(
        parse_courses(data.joinpath(COURSES_FILE).read_text(encoding="utf-8")),
        parse_employers(data.joinpath(EMPLOYERS_FILE).read_text(encoding="utf-8")),
    )
