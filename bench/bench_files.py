"""Generated upload files for the benchmarks: what real files look like, a chosen error share.

    write_mixed_file(path, rows, today=..., error_share=0.02, first=0, style="plain")

Every row has its own learner (distinct ULNs with valid check digits, NI numbers, CITB ids);
`first` shifts the learners, so two files of one ATO do not repeat each other's achievements.
A share of rows carries one error each (a spread of codes, DUP_01 included), about 3% a
warning, and 0.1% repeat an earlier upload's achievement (DUP_02: the returned keys are what
the benchmark records as that earlier upload). Cells use the habits of real files: spaced and
lower-case identifiers, ISO and d/m/yyyy dates, `="…"` text formulas, accents, notes with line
breaks.

`style` says how many cells are quoted, as spreadsheets quote them (every cell holding a
delimiter, a double quote or a line break, and only those):

- `plain`: few quoted cells (a note with a line break every 97 rows);
- `quoted`: half the rows carry a quoted cell, as ATOs' notes do: a quarter of the rows a note
  with a comma ("PO 4471, cohort B"), a quarter a note with doubled quotes (`said "thanks"`),
  one row in forty a note with a line break, one in fifty a surname with a comma; and a sixth
  of the rows have accented names;
- `mixed`: `quoted`, plus the shapes a hand-edited file adds and spreadsheets never write (so
  the fast path of the bulk pass leaves them to the csv module): one row in a hundred with a
  stray `"` inside an unquoted note (`2" pipe`), one in two hundred with text after a closing
  quote (`"PO 4471" cohort B`).
"""

from __future__ import annotations

import csv
import itertools
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from bench_offline_check import _COURSES, _FORENAMES, _SURNAMES, UPLOAD_DATE, _valid_ulns

from services.core.scheme.columns import template_header_line
from services.core.scheme.reference import bundled_reference

ERROR_SHARE = 0.02
# NI number prefixes that pass NINO_02/03 (no D F I Q U V, no O second, not reserved).
_NINO_PREFIXES = ("AB", "CE", "HJ", "JK", "LM", "PR", "ST", "WX")
_UNREGISTERED_LEVY = "99999999"  # well-formed, not in the bundled register: LEVY_02
_DUP_01_DISTANCE = 50  # rows; a multiple of the course and date cycles, so the key repeats
_DUP_02_EVERY = 1_000  # one row in this many repeats an earlier upload's achievement
STYLES = ("plain", "quoted", "mixed")
_ACCENTED_FORENAMES = ("Zoë", "Seán", "Renée", "Björn", "Łukasz", "Inès")
_COMMA_NOTES = ("PO 4471, cohort B", "Site 2, evening course", "Passed, certificate sent")
_QUOTE_NOTES = ('said "thanks"', 'the "blue" group', 'assessor: "excellent"')
_STRAY_QUOTE_NOTE = '2" pipe fitted'  # a `"` inside an unquoted field: an ordinary character
_AFTER_CLOSING_QUOTE = '"PO 4471" cohort B'  # read as `PO 4471 cohort B`

# (course code, achievement date, ULN) of a row that an earlier upload already had accepted.
EarlierKey = tuple[str, date, str]


@dataclass
class _Row:
    """The cells of one generated row, before the habits of real files are applied."""

    course: str
    achieved: date
    born: date
    forename: str
    surname: str
    levy: str
    notes: str
    uln_cell: str
    nino_cell: str
    citb_cell: str
    dob_override: str | None = None
    extra: list[str] = field(default_factory=list)


def write_mixed_file(
    path: Path,
    rows: int,
    *,
    today: date = UPLOAD_DATE,
    error_share: float = ERROR_SHARE,
    first: int = 0,
    seed: int = 7,
    style: str = "plain",
    grant_eligible: bool = True,
) -> list[EarlierKey]:
    """Writes `rows` data rows for an upload received on `today` with the quoting of `style`
    (see the module's text); returns the keys to record as an earlier accepted upload's
    achievements (DUP_02). `grant_eligible=False` names employers the grant does not cover:
    the same validation, and no claim for a grant bridge to make."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}: one of {', '.join(STYLES)}")
    rng = random.Random(seed)
    levy_numbers = [
        e.levy_number for e in bundled_reference().employers() if e.grant_eligible == grant_eligible
    ]
    ulns = itertools.islice(_valid_ulns(), first, None)
    recent_ulns: deque[str] = deque(maxlen=_DUP_01_DISTANCE)
    earlier: list[EarlierKey] = []
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(template_header_line() + "\r\n")
        writer = csv.writer(out, lineterminator="\r\n")
        for i in range(first, first + rows):
            uln = next(ulns)
            nino = (
                f"{_NINO_PREFIXES[i % 8]}{(i // 8) % 1_000_000:06d}{'ABCD'[(i // 8_000_000) % 4]}"
            )
            row = _valid_row(i, today, levy_numbers[i % len(levy_numbers)], uln, nino)
            if style != "plain":
                _quote_like_a_spreadsheet(row, i)
            warning = rng.random()
            _add_warning(row, warning)
            if rng.random() < error_share:
                error = rng.randrange(11)
                _add_error(row, error, uln, nino, today, recent_ulns)
            else:
                error = -1
            seeded = error == -1 and row.uln_cell and i % _DUP_02_EVERY == _DUP_02_EVERY // 2
            if seeded:
                earlier.append((row.course.upper(), row.achieved, row.uln_cell))
            # DUP_01 copies only a clean, unseeded row with the cycle's own date, so each
            # duplicate code comes from exactly one cause and the counts can be checked.
            clean = error == -1 and warning >= 0.01 and not seeded
            recent_ulns.append(row.uln_cell if clean else "")
            cells = _cells(row, i)
            if style == "mixed" and i % 100 == 37:
                out.write(_line_with_raw_notes(cells, _STRAY_QUOTE_NOTE))
            elif style == "mixed" and i % 200 == 71:
                out.write(_line_with_raw_notes(cells, _AFTER_CLOSING_QUOTE))
            else:
                writer.writerow(cells)
    return earlier


def _quote_like_a_spreadsheet(row: _Row, i: int) -> None:
    """The cells ATOs' files quote (the `quoted` style): notes with commas, doubled quotes and
    line breaks, surnames with commas; and accented forenames."""
    if i % 4 == 0:
        row.notes = _COMMA_NOTES[i // 4 % len(_COMMA_NOTES)]
    elif i % 4 == 1:
        row.notes = _QUOTE_NOTES[i // 4 % len(_QUOTE_NOTES)]
    elif i % 40 == 2:
        row.notes = "Passed, resit booked\r\nroom 4"
    if i % 50 == 3:
        row.surname = f"{row.surname}, Jr"
    if i % 6 == 5:
        row.forename = _ACCENTED_FORENAMES[i // 6 % len(_ACCENTED_FORENAMES)]


def _line_with_raw_notes(cells: list[str], notes: str) -> str:
    """The record as a hand-edited file may hold it: the notes cell (the last of the template)
    written as it is, the other cells quoted where they need it."""
    quoted = [
        f'"{cell.replace(chr(34), chr(34) * 2)}"' if any(c in cell for c in ',"\r\n') else cell
        for cell in cells
    ]
    quoted[10] = notes
    return ",".join(quoted) + "\r\n"


def _valid_row(i: int, today: date, levy: str, uln: str, nino: str) -> _Row:
    """Row `i` without a problem: its learner, course and dates cycle with `i`."""
    notes = ("Completed in full", "", "On site", "")[i % 4]
    if i % 97 == 0:
        notes = "Passed\r\nresit booked"  # a line break inside a quoted field
    kind = i % 20  # 65% ULN, 15% ULN and NI, 10% NI, 5% CITB, 5% ULN and CITB
    return _Row(
        course=_COURSES[i % len(_COURSES)],
        achieved=today - timedelta(days=i % 10),
        born=date(1960, 1, 1) + timedelta(days=(i * 37) % 14_000),
        forename=_FORENAMES[i % 8],
        surname=_SURNAMES[i % 7],
        levy=levy,
        notes=notes,
        uln_cell=uln if kind <= 15 or kind == 19 else "",
        nino_cell=nino if 13 <= kind <= 17 else "",
        citb_cell=f"C{i:08d}" if kind >= 18 else "",
    )


def _add_warning(row: _Row, draw: float) -> None:
    """About 3% of rows (`draw` below 0.03) get one warning."""
    if draw < 0.01:
        row.achieved -= timedelta(days=11)  # ACHDATE_03
    elif draw < 0.02:
        row.levy = _UNREGISTERED_LEVY  # LEVY_02
    elif draw < 0.025:
        row.notes = "-see the assessor's report"  # NOTES_02
    elif draw < 0.03:
        row.levy = ""  # LEVY_03


def _add_error(
    row: _Row, error: int, uln: str, nino: str, today: date, recent_ulns: deque[str]
) -> None:
    """One error of a spread of codes (`error` from 0 to 10)."""
    if error == 0:  # ULN_03: the check digit is wrong
        row.uln_cell = f"{uln[:9]}{(int(uln[9]) + 1) % 10}"
    elif error == 1:  # ULN_01 (damaged by a spreadsheet)
        row.uln_cell = "1.00000E+09"
    elif error == 2:  # NINO_01
        row.nino_cell = nino[:7]
    elif error == 3:  # COURSE_03
        row.course = "SD-XXX-999"
    elif error == 4:  # ACHDATE_02
        row.achieved = today + timedelta(days=3)
    elif error == 5:  # DOB_01: no such day
        row.dob_override = "31/02/1990"
    elif error == 6:  # DOB_02: ten years old
        row.born = row.achieved - timedelta(days=3653)
    elif error == 7:  # NAME_01
        row.forename = "J0hn"
    elif error == 8:  # ID_01
        row.uln_cell = row.nino_cell = row.citb_cell = ""
    elif error == 9:  # DUP_01: the learner of 50 rows earlier, same course and date
        if len(recent_ulns) == _DUP_01_DISTANCE and recent_ulns[0]:
            row.uln_cell, row.nino_cell, row.citb_cell = recent_ulns[0], "", ""
        else:
            row.uln_cell = "9999999999"  # ULN_02
    else:  # ROW_01: a cell beyond the template
        row.extra = ["stray"]


def _cells(row: _Row, i: int) -> list[str]:
    """The row as a file would carry it: spaced and lower-case identifiers, both date
    formats, missing references."""
    nino_cell = row.nino_cell
    if nino_cell and i % 5 == 1:
        nino_cell = (
            f"{nino_cell[:2].lower()} {nino_cell[2:4]} {nino_cell[4:6]} {nino_cell[6:8]}"
            f" {nino_cell[8:].lower()}"
        )
    return [
        f"REF-{i:07d}" if i % 11 else "",
        row.course.lower() if i % 9 == 4 else row.course,
        _date_cell(row.achieved, i + 1),
        row.forename,
        row.surname,
        row.dob_override or _date_cell(row.born, i),
        _uln_cell(row.uln_cell, i),
        nino_cell,
        row.citb_cell,
        row.levy,
        row.notes,
        *row.extra,
    ]


def _date_cell(day: date, i: int) -> str:
    return day.isoformat() if i % 4 == 0 else f"{day.day}/{day.month:02d}/{day.year}"


def _uln_cell(uln: str, i: int) -> str:
    if not uln or not uln.isdigit():
        return uln
    if i % 7 == 3:
        return f"{uln[:4]} {uln[4:7]} {uln[7:]}"
    if i % 53 == 5:
        return f'="{uln}"'  # a spreadsheet's text formula
    return uln
