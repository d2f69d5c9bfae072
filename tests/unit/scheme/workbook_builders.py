"""Workbooks for the guided-workbook tests, built by openpyxl in the test, then changed part by
part where a test needs what openpyxl does not write (a cached formula value, macros)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Mapping, Sequence

import openpyxl
from openpyxl.workbook.defined_name import DefinedName
from scheme_builders import HEADERS

from services.core.scheme.workbook_records import SHEET_NAME, TEMPLATE_MARKER

Cell = object
PartChange = Callable[[bytes], bytes]


def workbook(
    rows: Mapping[int, Sequence[Cell]],
    *,
    marker: bool = True,
    sheet_name: str = SHEET_NAME,
    other_sheet_first: bool = False,
) -> bytes:
    """A workbook whose sheet holds `rows` (row number -> cells from column A); the row numbers
    left out are left out of the sheet too."""
    book = openpyxl.Workbook()
    first = book.active
    assert first is not None
    if other_sheet_first:
        first.title = "How to save as CSV"
        first["A1"] = "Read me first"
        sheet = book.create_sheet(sheet_name)
    else:
        first.title = sheet_name
        sheet = first
    for row_number, cells in rows.items():
        for column, value in enumerate(cells, start=1):
            if value is not None:
                sheet.cell(row=row_number, column=column, value=value)
    if marker:
        book.defined_names[TEMPLATE_MARKER] = DefinedName(TEMPLATE_MARKER, attr_text='"1.2"')
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def guided(*data_rows: Sequence[Cell], first_row: int = 2) -> bytes:
    """The guided workbook: the template header on row 1, then `data_rows` from `first_row`."""
    rows: dict[int, Sequence[Cell]] = {1: HEADERS}
    rows.update({first_row + offset: row for offset, row in enumerate(data_rows)})
    return workbook(rows)


def changed(
    data: bytes,
    *,
    parts: Mapping[str, PartChange] | None = None,
    added: Mapping[str, bytes] | None = None,
    compression: int = zipfile.ZIP_DEFLATED,
) -> bytes:
    """The workbook's ZIP written again with some parts changed and some added."""
    parts = parts or {}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename in parts:
                content = parts[info.filename](content)
            target.writestr(info.filename, content, compress_type=compression)
        for name, content in (added or {}).items():
            target.writestr(name, content, compress_type=compression)
    return out.getvalue()


def sheet_part(data: bytes) -> str:
    """The part name of the Achievements sheet as openpyxl wrote it."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sheets = [name for name in archive.namelist() if name.startswith("xl/worksheets/sheet")]
    assert len(sheets) >= 1
    return sorted(sheets)[-1] if len(sheets) > 1 else sheets[0]
