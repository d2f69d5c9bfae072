"""The rows to fix of a partially accepted upload (scheme section 9), as CSV and as a workbook.

Pure: records in, file bytes out. The rows not accepted are given back exactly as the ATO sent
them, cell for cell, in template column order (cells past the header's columns after them, so
a `ROW_01` row still shows what it had), so that correcting them and uploading the file checks
them afresh: none of them was accepted, so none meets `DUP_02`. Rows whose only errors are
`DUP_01` or `DUP_02` need no fixing: they are left out and named, by their row numbers in the
upload, in a guidance record above the header (section 9 skips guidance records). That record is
where a person reading either file looks first, and an API client reads it as text.

In the workbook, the guided template's layout (guidance rows, header, the template's marker,
every cell text) holds the rows, and each cell at fault carries its problems as a cell comment;
the first cell of every row names the row it was in the upload, with the row's own problems
(`ID_01`, `ROW_01`, ...). Nothing here is logged: the rows are a learner's data.
"""

from __future__ import annotations

import csv
import io
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, Cell
from openpyxl.comments import Comment
from openpyxl.styles import Font
from openpyxl.workbook.defined_name import DefinedName
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from services.core.scheme.codes import GUIDANCE_MARK, Code, Severity, row_ranges
from services.core.scheme.columns import COLUMNS, HeaderMap
from services.core.scheme.records import Record
from services.core.scheme.text import trim

CSV_MEDIA_TYPE: Final = "text/csv; charset=utf-8"
XLSX_MEDIA_TYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# The guided workbook's data sheet and marker (scheme section 9): an upload of this workbook as
# it is is read as the guided template.
DATA_SHEET: Final = "Achievements"
TEMPLATE_MARKER: Final = "AchievementsTemplateVersion"
TEMPLATE_VERSION: Final = "1.2"
DUPLICATE_CODES: Final = frozenset({Code.DUP_01.value, Code.DUP_02.value})
# Row numbers named in one guidance record: a note stays readable, and far within the bounds
# of one record (section 8), however many rows there are.
MAX_NAMED_RANGES: Final = 200
COMMENT_AUTHOR: Final = "Achievements checks"
COLUMN_WIDTH: Final = 24
TEXT_FORMAT: Final = "@"
_UTF8_BOM: Final = "\ufeff"


@dataclass(frozen=True, slots=True)
class Problem:
    """One stored issue of a row: its template column (None for a row-level code)."""

    column: str | None
    code: str
    severity: str
    message: str


@dataclass(frozen=True, slots=True)
class RowToFix:
    """A row not accepted: its number in the upload, its cells in template column order (then
    any cells past the header's columns), and its stored problems. `problems_kept` is False
    when the report, over its cap, kept none of the row's errors."""

    source_row: int
    cells: tuple[str, ...]
    problems: tuple[Problem, ...]
    problems_kept: bool


@dataclass(frozen=True, slots=True)
class RowsToFix:
    rows: tuple[RowToFix, ...]
    duplicates: tuple[int, ...]  # rows of the upload left out: their only errors are DUP_0x


class RowNumbers:
    """A set of row numbers in little memory (4 bytes each, sorted): the accepted rows of an
    upload of up to a million rows."""

    def __init__(self, rows: Iterable[int]) -> None:
        self._rows = sorted(rows)

    def __contains__(self, row: object) -> bool:
        if not isinstance(row, int):
            return False
        index = bisect_left(self._rows, row)
        return index < len(self._rows) and self._rows[index] == row

    def __len__(self) -> int:
        return len(self._rows)


def select_rows(
    records: Iterable[Record],
    header: HeaderMap,
    accepted: RowNumbers,
    problems: Mapping[int, Sequence[Problem]],
) -> RowsToFix:
    """The rows to fix among the upload's data records (blank records included, as read): every
    non-blank record not accepted, except those whose only errors are duplicates."""
    rows: list[RowToFix] = []
    duplicates: list[int] = []
    for row_number, cells in records:
        if row_number in accepted or not any(map(trim, cells)):
            continue
        found = tuple(problems.get(row_number, ()))
        errors = [problem.code for problem in found if problem.severity == Severity.ERROR]
        if errors and all(code in DUPLICATE_CODES for code in errors):
            duplicates.append(row_number)
            continue
        rows.append(RowToFix(row_number, template_order(cells, header), found, bool(errors)))
    return RowsToFix(tuple(rows), tuple(duplicates))


def template_order(cells: Sequence[str], header: HeaderMap) -> tuple[str, ...]:
    """The record's cells under the template's columns, in template order (a short record's
    missing cells empty), then its cells past the header's columns up to the last non-empty one:
    the values exactly as sent."""
    ordered = [cells[index] if index < len(cells) else "" for index in header.indices]
    extra = list(cells[header.width :])
    while extra and not trim(extra[-1]):
        extra.pop()
    return (*ordered, *extra)


def notes(selected: RowsToFix) -> list[str]:
    """The guidance records above the header: what the file is, where its rows come from, and
    the duplicates left out. Row numbers only: no value from the file."""
    count = len(selected.rows)
    rows_were = "row of your upload that was" if count == 1 else "rows of your upload that were"
    lines = [
        f"{GUIDANCE_MARK} Rows to fix: the {count:,} {rows_were} not accepted, as you sent"
        f" {'it' if count == 1 else 'them'}. Correct {'it' if count == 1 else 'them'}, then"
        " upload this file: its rows are checked afresh. Do not upload your whole file again:"
        " its other rows were accepted, and would be refused as duplicates (DUP_02)."
    ]
    if selected.rows:
        named = _named_rows([row.source_row for row in selected.rows])
        these_were = "this was" if count == 1 else "these were"
        lines.append(
            f"{GUIDANCE_MARK} In your file {these_were} {named}, in this order. The problems are"
            " in the error report, by those row numbers."
        )
    if selected.duplicates:
        named = _named_rows(list(selected.duplicates))
        one = len(selected.duplicates) == 1
        lines.append(
            f"{GUIDANCE_MARK} Left out: {named} of your file, which"
            f" {'repeats' if one else 'repeat'} an earlier row of the file (DUP_01) or an"
            f" achievement already accepted (DUP_02). {'It needs' if one else 'They need'} no"
            f" fixing: do not send {'it' if one else 'them'} again."
        )
    return lines


def _named_rows(rows: list[int]) -> str:
    """`row_ranges`, at most MAX_NAMED_RANGES ranges, then how many rows more."""
    ranges: list[int] = []
    spans = 0
    for index, row in enumerate(rows):
        if index == 0 or row != rows[index - 1] + 1:
            spans += 1
            if spans > MAX_NAMED_RANGES:
                left = len(rows) - index
                return f"{row_ranges(ranges)} and {left:,} more"
        ranges.append(row)
    return row_ranges(ranges)


def to_csv(selected: RowsToFix) -> bytes:
    """The rows to fix as the guided CSV file: a byte-order mark (so that a spreadsheet opens it
    as UTF-8), the guidance records, the template's header row, the rows; CRLF line ends,
    quoting as a spreadsheet's "CSV UTF-8" export writes it."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows([note] for note in notes(selected))
    writer.writerow([spec.header for spec in COLUMNS])
    writer.writerows(row.cells for row in selected.rows)
    return (_UTF8_BOM + out.getvalue()).encode("utf-8")


def to_workbook(selected: RowsToFix) -> bytes:
    """The rows to fix as the guided workbook: the Achievements sheet (the only one, so it opens
    there) with the guidance rows, the header, and the rows as text cells, each cell at fault
    commented with its problems; the template's marker, so the workbook uploads as it is."""
    workbook = Workbook(write_only=True)
    sheet: WriteOnlyWorksheet = workbook.create_sheet(DATA_SHEET)
    for spec in COLUMNS:
        # The stubs leave out a write-only sheet's column dimensions, which openpyxl has.
        sheet.column_dimensions[spec.letter].width = COLUMN_WIDTH  # type: ignore[attr-defined]
    for note in notes(selected):
        sheet.append([_text(sheet, note)])
    header = []
    for spec in COLUMNS:
        cell = _text(sheet, spec.header)
        cell.font = Font(bold=True)
        header.append(cell)
    sheet.append(header)
    for row in selected.rows:
        sheet.append(_row_cells(sheet, row))
    # A constant name (no cell behind it), as the published guided template carries.
    workbook.defined_names[TEMPLATE_MARKER] = DefinedName(
        TEMPLATE_MARKER, attr_text=f'"{TEMPLATE_VERSION}"'
    )
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _text(sheet: WriteOnlyWorksheet, value: str) -> Cell:
    """A text cell: never a formula or a number, whatever the text starts with."""
    cell = WriteOnlyCell(sheet, value=value)
    cell.data_type = "s"
    cell.number_format = TEXT_FORMAT
    return cell


def _row_cells(sheet: WriteOnlyWorksheet, row: RowToFix) -> list[Cell]:
    by_column: dict[str | None, list[str]] = {}
    for problem in row.problems:
        prefix = "Warning " if problem.severity == Severity.WARNING else ""
        by_column.setdefault(problem.column, []).append(
            f"{prefix}{problem.code}: {problem.message}"
        )
    first_notes = [f"Row {row.source_row:,} of your file."]
    if not row.problems_kept:
        first_notes.append(
            "The error report of the upload was over its cap and did not keep this row's"
            " problems: upload this file to see them."
        )
    first_notes.extend(by_column.get(None, []))
    cells: list[Cell] = []
    for position, value in enumerate(row.cells):
        column = COLUMNS[position].header if position < len(COLUMNS) else None
        texts = list(by_column.get(column, [])) if column is not None else []
        if position == 0:
            texts = first_notes + texts
        cleaned = ILLEGAL_CHARACTERS_RE.sub("", value)
        if cleaned != value:
            # A workbook cannot hold these control characters: the cell shows the rest.
            texts.append(
                "Control characters in this cell were removed: a workbook cannot hold them."
            )
        cell = _text(sheet, cleaned)
        if texts:
            cell.comment = Comment("\n".join(texts), COMMENT_AUTHOR, width=320, height=160)
        cells.append(cell)
    return cells
