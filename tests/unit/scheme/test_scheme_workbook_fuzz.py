"""Fuzzing the guided workbook as the CSV path is fuzzed (`test_scheme_fuzz.py`): whatever the
workbook, `check_file` gives a sound report (the same invariants), never a crash.

Workbooks built by openpyxl with cells of every kind (text with line breaks and `#`, numbers
large and small, dates, booleans, error texts, formulas), rows left out, the header or not,
the marker or not, guidance rows above the header; then, now and then, damage to the ZIP
(bytes changed, the archive cut short, parts added: macros, external links, a part that
inflates far past its ratio). A refusal must be a FILE_ code; a hang trips the timeout.
"""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime

import openpyxl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl.workbook.defined_name import DefinedName
from scheme_builders import HEADERS, VALID
from test_scheme_fuzz import FUZZ_SETTINGS, check_bytes

from services.core.scheme.codes import Policy
from services.core.scheme.workbook_records import SHEET_NAME, TEMPLATE_MARKER

_piece = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
    max_size=12,
) | st.sampled_from(["\n", "\r\n", "\t", "#", ",", '"', "_x000D_", "_x005F_x0041_", "="])
text = st.lists(_piece, max_size=4).map("".join)
cell = st.one_of(
    st.none(),
    text,
    st.sampled_from(list(VALID.values())),
    st.integers(min_value=-(10**18), max_value=10**18),
    st.floats(allow_nan=False, allow_infinity=False),
    st.dates(min_value=date(1900, 3, 1), max_value=date(9999, 12, 31)),
    st.datetimes(min_value=datetime(1900, 3, 1)),
    st.booleans(),
    st.sampled_from(["#N/A", "#VALUE!", "#DIV/0!", "=1+1", "=A1"]),
)
data_row = st.lists(cell, max_size=14)


@st.composite
def sheet_rows(draw: st.DrawFn) -> dict[int, list[object]]:
    rows: dict[int, list[object]] = {}
    row_number = 1
    for _ in range(draw(st.integers(0, 3))):  # guidance rows above the header
        rows[row_number] = [f"# {draw(text)}"]
        row_number += 1
    if draw(st.booleans()):
        rows[row_number] = list(HEADERS) if draw(st.booleans()) else draw(data_row)
        row_number += 1
    for _ in range(draw(st.integers(0, 8))):
        row_number += draw(st.sampled_from([1, 1, 1, 2, 5, 300]))  # rows left out
        rows[row_number] = draw(data_row)
    return rows


def build(rows: dict[int, list[object]], *, marker: bool, sheet_name: str) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = sheet_name
    for row_number, cells in rows.items():
        for column, value in enumerate(cells, start=1):
            if value is not None:
                sheet.cell(row=row_number, column=column, value=value)
    if marker:
        book.defined_names[TEMPLATE_MARKER] = DefinedName(TEMPLATE_MARKER, attr_text='"1.2"')
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


ADDED_PARTS = {
    "xl/vbaProject.bin": b"\xd0\xcf\x11\xe0",
    "xl/externalLinks/externalLink1.xml": b"<externalLink/>",
    "xl/media/image1.png": bytes(1024 * 1024),  # inflates ~1,000 times its compressed size
    "docProps/custom.xml": b"<Properties/>",
}


# Positions drawn as fractions of the length: openpyxl stamps the time into the workbook, so
# its length may differ between two runs of one example, and what is drawn must not.
_fraction = st.floats(min_value=0, max_value=1, exclude_max=True)


def _at(fraction: float, length: int) -> int:
    return int(fraction * length)


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    kind = draw(st.sampled_from(["none", "none", "flip", "cut", "add"]))
    if kind == "flip":
        data = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            position = _at(draw(_fraction), len(data))
            data[position] = draw(st.integers(0, 255))
        return bytes(data)
    if kind == "cut":
        return data[: _at(draw(_fraction), len(data))]
    if kind == "add":
        name = draw(st.sampled_from(sorted(ADDED_PARTS)))
        out = io.BytesIO()
        with (
            zipfile.ZipFile(io.BytesIO(data)) as source,
            zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
        ):
            for info in source.infolist():
                target.writestr(info.filename, source.read(info.filename))
            target.writestr(name, ADDED_PARTS[name])
        return out.getvalue()
    return data


@st.composite
def any_workbook(draw: st.DrawFn) -> bytes:
    data = build(
        draw(sheet_rows()),
        marker=draw(st.sampled_from([True, True, True, False])),
        sheet_name=draw(st.sampled_from([SHEET_NAME, SHEET_NAME, "Sheet1"])),
    )
    return draw(damaged(data))


@pytest.mark.timeout(240)
@settings(max_examples=60, **FUZZ_SETTINGS)  # type: ignore[arg-type]
@given(data=any_workbook(), policy=st.sampled_from(list(Policy)))
def test_any_workbook_gives_a_sound_report(data: bytes, policy: Policy) -> None:
    report = check_bytes(data, policy)
    if report.file_errors:
        assert report.file_errors[0].code.value.startswith("FILE_")


@pytest.mark.tier2
@pytest.mark.timeout(600)
@settings(max_examples=1_000, **FUZZ_SETTINGS)  # type: ignore[arg-type]
@given(data=any_workbook(), policy=st.sampled_from(list(Policy)))
def test_any_workbook_gives_a_sound_report_at_length(data: bytes, policy: Policy) -> None:
    check_bytes(data, policy)
