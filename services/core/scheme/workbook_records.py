"""The guided workbook (scheme section 9): an .xlsx read as it is, its sheet `Achievements` as
CSV records that are then checked exactly as a CSV file.

A workbook is a ZIP of XML parts, so it is first screened, before any of its XML is parsed:

- the central directory is bounded (at most 64 entries), and every entry is inflated once
  through zlib with a counter, so the bounds hold for the bytes actually inflated, never for the
  sizes the archive declares: an entry inflating to more than 100 times its compressed size is
  FILE_01, more inflated bytes in all than FILE_03's size limit is FILE_03;
- macros (a `vbaProject.bin` part, or a macro content type, whatever the file is called),
  external links and the old `.xls` format are FILE_01, and so is a workbook without the
  template's marker (the defined name `AchievementsTemplateVersion`).

Only then is the sheet read, with openpyxl's own row and cell parser (the one its read-only mode
runs) in a loop of ours that drops every row once read: memory stays flat whatever the sheet's
length, and no declared dimension is ever allocated (a reader that builds the sheet as a dense
grid, such as calamine, aborts the process on a sheet whose only two cells are A1 and
XFD1048576). Every part the reader opens goes through the same counter again. Shared strings are
kept as UTF-8 in one spooled temporary file with an offset each, not as a Python string each.

Cells are written as section 9 reads them: text as is, a number in its shortest decimal form,
a date as dd/mm/yyyy, TRUE or FALSE, a formula's cached value (or nothing), an error's text; rows
the sheet leaves out become empty records, so record numbers are the sheet's row numbers.
"""

from __future__ import annotations

import csv
import errno
import io
import re
import tempfile
import zipfile
import zlib
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import PurePosixPath
from typing import IO, Any, Final, cast
from xml.etree.ElementTree import Element, ParseError, XMLPullParser, fromstring

from openpyxl.styles.stylesheet import Stylesheet
from openpyxl.utils.datetime import MAC_EPOCH, WINDOWS_EPOCH, from_excel
from openpyxl.worksheet._reader import WorkSheetParser

from services.core.scheme.codes import (
    FILE_01_WORKBOOK,
    Code,
    FileError,
    too_many_cells_message,
)
from services.core.scheme.record_scanner import MAX_RECORD_CELLS, Opener

ZIP_SIGNATURE: Final = b"PK\x03\x04"
OLE_SIGNATURE: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls (and other OLE files)
SIGNATURE_BYTES: Final = len(OLE_SIGNATURE)
TEMPLATE_MARKER: Final = "AchievementsTemplateVersion"
SHEET_NAME: Final = "Achievements"

MAX_ENTRIES: Final = 64
MAX_INFLATION_RATIO: Final = 100
# The central directory of 64 entries is a few KiB; a bigger one is not a workbook, and zipfile
# would build an object for every entry it lists before anything could count them.
MAX_DIRECTORY_BYTES: Final = 1024 * 1024
# The parts read whole to decide what the workbook is (content types, workbook, relationships,
# styles): each is a few KiB in any real workbook.
MAX_SMALL_PART_BYTES: Final = 2 * 1024 * 1024
# One row (or shared string) of the sheet's XML: a record of section 8's 1 MiB bound, its
# characters escaped, is well under this; so is any stretch of XML between two tags.
MAX_ELEMENT_BYTES: Final = 8 * 1024 * 1024
# Elements inside one row: cells and their values, far more than Excel's 16,384 columns need.
MAX_ELEMENT_CHILDREN: Final = 100_000
# Excel's own bounds: 1,048,576 rows.
MAX_SHEET_ROW: Final = 1_048_576
INFLATE_BLOCK_BYTES: Final = 256 * 1024
# Shared strings stay in memory up to this size, then go to a temporary file.
SHARED_STRINGS_MEMORY_BYTES: Final = 8 * 1024 * 1024

_MAIN_NS: Final = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS: Final = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PACKAGE_REL_NS: Final = "http://schemas.openxmlformats.org/package/2006/relationships"
_CONTENT_TYPES_NS: Final = "http://schemas.openxmlformats.org/package/2006/content-types"
_ROW_TAG: Final = f"{{{_MAIN_NS}}}row"
_SHEET_DATA_TAG: Final = f"{{{_MAIN_NS}}}sheetData"
_SI_TAG: Final = f"{{{_MAIN_NS}}}si"
_T_TAG: Final = f"{{{_MAIN_NS}}}t"
_R_TAG: Final = f"{{{_MAIN_NS}}}r"
_CONTENT_TYPES_PART: Final = "[Content_Types].xml"
_WORKBOOK_PART: Final = "xl/workbook.xml"
_WORKBOOK_RELS_PART: Final = "xl/_rels/workbook.xml.rels"
_STYLES_TYPE: Final = "/styles"
_SHARED_STRINGS_TYPE: Final = "/sharedStrings"
# A content type is a macro's when it names one of these (case ignored): the macro-enabled
# workbook, template and add-in types, the VBA project and its signature, Excel 4 macro sheets.
_MACRO_CONTENT_TYPE_WORDS: Final = ("macroenabled", "vbaproject", "macrosheet")
_EXTERNAL_LINK_CONTENT_TYPE_WORD: Final = "externallink"
_ESCAPED_CHARACTER: Final = re.compile(r"_x([0-9A-Fa-f]{4})_")  # ECMA-376's _xHHHH_

_EXPORT_ADVICE: Final = (
    "Open it in your spreadsheet and save or export its Achievements sheet as 'CSV UTF-8' or"
    " 'CSV (Comma delimited)', then upload the CSV file."
)
FILE_01_NOT_GUIDED: Final = (
    "The file is a spreadsheet workbook but not the guided template (the template's marker is"
    " missing). Download the guided template again and copy your rows into its Achievements"
    f" sheet, or: {_EXPORT_ADVICE}"
)
FILE_01_NO_SHEET: Final = (
    "The workbook has the guided template's marker but no sheet named 'Achievements'. Download"
    " the guided template again and copy your rows into its Achievements sheet."
)
FILE_01_MACROS: Final = (
    "The workbook contains macros, which the service never opens. Save it as an Excel Workbook"
    f" (.xlsx) without macros, or: {_EXPORT_ADVICE}"
)
FILE_01_EXTERNAL_LINKS: Final = (
    "The workbook links to other workbooks (external links), which the service never follows."
    f" Break the links (or paste the values), or: {_EXPORT_ADVICE}"
)
FILE_01_TOO_MANY_PARTS: Final = (
    f"The workbook has more than {MAX_ENTRIES} parts inside, far more than the guided template,"
    f" so it is not read. {_EXPORT_ADVICE}"
)
FILE_01_OVER_INFLATED: Final = (
    f"A part of the workbook expands to more than {MAX_INFLATION_RATIO} times its stored size,"
    f" far more than any spreadsheet, so it is not read. {_EXPORT_ADVICE}"
)
FILE_01_UNREADABLE: Final = (
    "The workbook cannot be read: it is damaged, encrypted or not saved by a spreadsheet"
    f" program. {_EXPORT_ADVICE}"
)
FILE_01_ROW_ORDER: Final = (
    "The workbook cannot be read: its Achievements sheet lists rows out of order or beyond"
    f" Excel's last row. {_EXPORT_ADVICE}"
)


def workbook_too_large_message(limit_bytes: int) -> str:
    """FILE_03 for a workbook: what it expands to is what counts, and the limit is in rows."""
    mib, remainder = divmod(limit_bytes, 1024 * 1024)
    limit = f"{mib} MB" if remainder == 0 else f"{limit_bytes:,} bytes"
    return (
        f"The workbook expands to more than the size limit of {limit} when opened (a workbook"
        " holds some 250,000 rows at most): split the rows into several workbooks or files."
    )


class WorkbookEncoding(StrEnum):
    """What section 8's `encoding` field reports for the guided workbook."""

    XLSX = "xlsx"


def has_workbook_signature(head: bytes) -> bool:
    """True for a ZIP (.xlsx, .ods) or an OLE (.xls) file: never CSV text (section 8)."""
    return head.startswith((ZIP_SIGNATURE, OLE_SIGNATURE))


class _Refused(Exception):
    """Internal: the screen or the reading stops with this file error."""

    def __init__(self, error: FileError) -> None:
        super().__init__(error.code.value)
        self.error = error


def _refuse(code: Code, message: str) -> _Refused:
    return _Refused(FileError(code, message))


@dataclass(slots=True)
class _Inflation:
    """Inflated bytes of the whole archive against FILE_03's limit."""

    limit_bytes: int
    total_bytes: int = 0

    def count(self, info: zipfile.ZipInfo, inflated: int, entry_bytes: int) -> None:
        self.total_bytes += inflated
        if entry_bytes > MAX_INFLATION_RATIO * max(info.compress_size, 1):
            raise _refuse(Code.FILE_01, FILE_01_OVER_INFLATED)
        if self.total_bytes > self.limit_bytes:
            raise _refuse(Code.FILE_03, workbook_too_large_message(self.limit_bytes))


class _CountedEntry(io.RawIOBase):
    """One entry as zipfile inflates it, every byte counted against the bounds."""

    def __init__(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, inflation: _Inflation):
        super().__init__()
        self._info = info
        self._inflation = inflation
        self._entry = archive.open(info)
        self.entry_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._entry.read(min(len(buffer), INFLATE_BLOCK_BYTES))
        self.entry_bytes += len(data)
        self._inflation.count(self._info, len(data), self.entry_bytes)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._entry.close()
        super().close()


@dataclass(frozen=True, slots=True)
class GuidedWorkbook:
    """Where the guided workbook keeps what the reading needs, found by the screen."""

    sheet_part: str
    shared_strings_part: str | None
    styles_part: str | None
    date1904: bool


class WorkbookFile:
    """An open workbook: `screen()` first (the bounds, the kind of workbook), then `rows()`."""

    def __init__(self, stream: IO[bytes], *, size_limit_bytes: int) -> None:
        self._stream = stream
        self._size_limit_bytes = size_limit_bytes
        self._archive: zipfile.ZipFile | None = None

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()

    def screen(self) -> GuidedWorkbook:
        """Raises `_Refused` unless this is the guided workbook within every bound."""
        head = self._stream.read(SIGNATURE_BYTES)
        self._stream.seek(0)
        if not head.startswith(ZIP_SIGNATURE):
            raise _refuse(Code.FILE_01, FILE_01_WORKBOOK)  # .xls, or no workbook at all
        archive = self._open_archive()
        entries = archive.infolist()
        if len(entries) > MAX_ENTRIES:
            raise _refuse(Code.FILE_01, FILE_01_TOO_MANY_PARTS)
        for info in entries:
            if info.flag_bits & 0x1 or info.compress_type not in (
                zipfile.ZIP_STORED,
                zipfile.ZIP_DEFLATED,
            ):
                raise _refuse(Code.FILE_01, FILE_01_UNREADABLE)  # encrypted, or not Excel's
        names = {info.filename for info in entries}
        if any(PurePosixPath(name).name.lower() == "vbaproject.bin" for name in names):
            raise _refuse(Code.FILE_01, FILE_01_MACROS)
        if any(_is_external_link_part(name) for name in names):
            raise _refuse(Code.FILE_01, FILE_01_EXTERNAL_LINKS)
        # What the archive declares can refuse it at once (an honest zip bomb says what it
        # is); it never admits it: the bounds below are on the bytes actually inflated.
        inflation = _Inflation(self._size_limit_bytes)
        for info in entries:
            inflation.count(info, info.file_size, info.file_size)
        # The small parts that say what the workbook is, each read through its own counter.
        _check_content_types(self._small_xml(_CONTENT_TYPES_PART))
        if _WORKBOOK_PART not in names:
            raise _refuse(Code.FILE_01, FILE_01_NOT_GUIDED)
        guided = self._guided(self._small_xml(_WORKBOOK_PART), names)
        # Every entry inflated once with the counter before any of the sheet's XML is read.
        inflation = _Inflation(self._size_limit_bytes)
        for info in entries:
            with _CountedEntry(archive, info, inflation) as entry:
                while entry.read(INFLATE_BLOCK_BYTES):
                    pass
        return guided

    def _open_archive(self) -> zipfile.ZipFile:
        try:
            directory_bytes = _central_directory_bytes(self._stream)
            if directory_bytes > MAX_DIRECTORY_BYTES:
                raise _refuse(Code.FILE_01, FILE_01_TOO_MANY_PARTS)
            self._archive = zipfile.ZipFile(self._stream)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
            raise _refuse(Code.FILE_01, FILE_01_WORKBOOK) from None
        except NotImplementedError:  # a ZIP version or feature no spreadsheet writes
            raise _refuse(Code.FILE_01, FILE_01_UNREADABLE) from None
        return self._archive

    def _entry(self, name: str) -> _CountedEntry:
        if self._archive is None:
            raise RuntimeError("screen the workbook first")
        # A fresh counter per part: the screen already bounded the archive as a whole, and a
        # part read again must still keep to its own ratio.
        return _CountedEntry(
            self._archive, self._archive.getinfo(name), _Inflation(self._size_limit_bytes)
        )

    def _small_xml(self, name: str) -> Element:
        if self._archive is None:
            raise RuntimeError("screen the workbook first")
        try:
            info = self._archive.getinfo(name)
        except KeyError:
            raise _refuse(Code.FILE_01, FILE_01_UNREADABLE) from None
        with self._entry(name) as entry:
            data = entry.read(MAX_SMALL_PART_BYTES + 1)
        if len(data) > MAX_SMALL_PART_BYTES or info.file_size > MAX_SMALL_PART_BYTES:
            raise _refuse(Code.FILE_01, FILE_01_UNREADABLE)
        return _parse_xml(data)

    def _guided(self, workbook: Element, names: set[str]) -> GuidedWorkbook:
        if workbook.find(f"{{{_MAIN_NS}}}externalReferences") is not None:
            raise _refuse(Code.FILE_01, FILE_01_EXTERNAL_LINKS)
        defined = workbook.iterfind(f"{{{_MAIN_NS}}}definedNames/{{{_MAIN_NS}}}definedName")
        if not any(name.get("name") == TEMPLATE_MARKER for name in defined):
            raise _refuse(Code.FILE_01, FILE_01_NOT_GUIDED)
        targets = self._relationships(names)
        sheet_id = next(
            (
                sheet.get(f"{{{_REL_NS}}}id")
                for sheet in workbook.iterfind(f"{{{_MAIN_NS}}}sheets/{{{_MAIN_NS}}}sheet")
                if sheet.get("name") == SHEET_NAME
            ),
            None,
        )
        sheet_part = targets.get(sheet_id or "", (None, ""))[0]
        if sheet_part is None or sheet_part not in names:
            raise _refuse(Code.FILE_01, FILE_01_NO_SHEET)
        by_type = {kind: part for part, kind in targets.values()}
        shared_strings = _part_of_type(by_type, _SHARED_STRINGS_TYPE, names)
        styles = _part_of_type(by_type, _STYLES_TYPE, names)
        properties = workbook.find(f"{{{_MAIN_NS}}}workbookPr")
        date1904 = properties is not None and properties.get("date1904") in ("1", "true")
        return GuidedWorkbook(sheet_part, shared_strings, styles, date1904)

    def _relationships(self, names: set[str]) -> dict[str, tuple[str | None, str]]:
        """The workbook's relationships: id -> (part name, relationship type)."""
        if _WORKBOOK_RELS_PART not in names:
            raise _refuse(Code.FILE_01, FILE_01_UNREADABLE)
        targets: dict[str, tuple[str | None, str]] = {}
        for relation in self._small_xml(_WORKBOOK_RELS_PART):
            if relation.tag != f"{{{_PACKAGE_REL_NS}}}Relationship":
                continue
            if relation.get("TargetMode") == "External":
                raise _refuse(Code.FILE_01, FILE_01_EXTERNAL_LINKS)
            target = relation.get("Target", "")
            part = target.lstrip("/") if target.startswith("/") else _joined("xl", target)
            targets[relation.get("Id", "")] = (part, relation.get("Type", ""))
        return targets

    def rows(self, guided: GuidedWorkbook) -> Iterator[tuple[int, list[str]]]:
        """The sheet's rows that hold a cell, in order: (row number, cell texts), the texts up
        to the last non-empty one. Raises `_Refused` for a sheet that cannot be read."""
        styles = self._date_styles(guided.styles_part)
        with _SharedStrings() as shared:
            if guided.shared_strings_part is not None:
                with self._entry(guided.shared_strings_part) as source:
                    shared.load(source)
            with self._entry(guided.sheet_part) as source:
                yield from _sheet_rows(source, shared, styles, guided.date1904)

    def _date_styles(self, styles_part: str | None) -> frozenset[int]:
        if styles_part is None:
            return frozenset()
        stylesheet: Any = cast(Any, Stylesheet).from_tree(self._small_xml(styles_part))
        return frozenset(stylesheet.date_formats)


def _central_directory_bytes(stream: IO[bytes]) -> int:
    """The central directory's size as the end record declares it (zipfile reads that many
    bytes into memory and makes an object per entry before anyone can count them)."""
    end = zipfile._EndRecData(stream)  # type: ignore[attr-defined]  # zipfile's own finder
    if not end:
        raise zipfile.BadZipFile("no end of central directory")
    return int(end[zipfile._ECD_SIZE])  # type: ignore[attr-defined]


def _parse_xml(data: bytes) -> Element:
    # Expat (2.4 and later) bounds entity expansion, and nothing external is ever loaded; the
    # part's size is bounded already.
    try:
        return fromstring(data)  # noqa: S314
    except ParseError:
        raise _refuse(Code.FILE_01, FILE_01_UNREADABLE) from None


def _check_content_types(content_types: Element) -> None:
    for declared in content_types:
        kind = declared.get("ContentType", "").lower()
        if any(word in kind for word in _MACRO_CONTENT_TYPE_WORDS):
            raise _refuse(Code.FILE_01, FILE_01_MACROS)
        if _EXTERNAL_LINK_CONTENT_TYPE_WORD in kind:
            raise _refuse(Code.FILE_01, FILE_01_EXTERNAL_LINKS)


def _is_external_link_part(name: str) -> bool:
    return "externallink" in name.lower()


def _joined(folder: str, target: str) -> str | None:
    """A relationship target relative to `folder`, normalised; None if it leaves the package."""
    parts: list[str] = []
    for piece in f"{folder}/{target}".split("/"):
        if piece in ("", "."):
            continue
        if piece == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(piece)
    return "/".join(parts)


def _part_of_type(by_type: dict[str, str | None], suffix: str, names: set[str]) -> str | None:
    for kind, part in by_type.items():
        if kind.endswith(suffix) and part in names:
            return part
    return None


class _SharedStrings:
    """The shared strings table: UTF-8 text in one spooled file, an offset per string, so a
    table of millions of short strings costs 8 bytes each in memory, not a Python string."""

    def __init__(self) -> None:
        # Closed by __exit__: the table lives as long as the sheet is read.
        self._text = tempfile.SpooledTemporaryFile(max_size=SHARED_STRINGS_MEMORY_BYTES)  # noqa: SIM115
        self._offsets = array("Q", [0])

    def __enter__(self) -> _SharedStrings:
        return self

    def __exit__(self, *exc: object) -> None:
        self._text.close()

    def load(self, source: io.RawIOBase) -> None:
        offset = 0
        for element in _bounded_elements(source, _SI_TAG):
            # Kept escaped (`_xHHHH_`): every cell's text is unescaped once, when it is read.
            data = _string_item_text(element).encode("utf-8", "surrogatepass")
            self._text.write(data)
            offset += len(data)
            self._offsets.append(offset)

    def __getitem__(self, index: int) -> str:
        if not 0 <= index < len(self._offsets) - 1:
            raise IndexError(index)
        start, end = self._offsets[index], self._offsets[index + 1]
        self._text.seek(start)
        return self._text.read(end - start).decode("utf-8", "surrogatepass")


def _string_item_text(item: Element) -> str:
    """A shared string's text: its `t`, or the `t` of each of its rich text runs, leaving out
    the phonetic runs (`rPh`) as Excel shows them (openpyxl's `Text.content`, without
    building its objects for every string)."""
    texts = []
    for child in item:
        if child.tag == _T_TAG:
            texts.append(child.text or "")
        elif child.tag == _R_TAG:
            texts.extend(run.text or "" for run in child if run.tag == _T_TAG)
    return "".join(texts)


def _bounded_elements(source: io.RawIOBase, tag: str) -> Iterator[Element]:
    """The `tag` elements of an XML part, each whole, in order, and nothing else kept.

    ElementTree keeps every element under the root, cleared or not, so each element is removed
    from its parent once ended (a `tag` element once handed out). And the parser buffers a tag
    or a text until it ends, so no stretch of MAX_ELEMENT_BYTES passes without an event, no
    `tag` element spans more than that, or holds more than MAX_ELEMENT_CHILDREN elements: the
    memory held is one row's, whatever the part."""
    parser: XMLPullParser[Element] = XMLPullParser(events=("start", "end"))
    parents: list[Element] = []
    target_start: int | None = None  # bytes fed when the open `tag` element started
    children = 0
    fed = last_event = 0
    while block := source.read(INFLATE_BLOCK_BYTES):
        parser.feed(block)
        fed += len(block)
        for happened in parser.read_events():
            event, element = cast(tuple[str, Element], happened)
            last_event = fed
            if event == "start":
                if target_start is not None:
                    children += 1
                elif element.tag == tag:
                    target_start, children = fed - len(block), 0
                parents.append(element)
                continue
            parents.pop()
            if element.tag == tag and target_start is not None and tag not in _tags(parents):
                yield element
                target_start = None
            elif target_start is not None:
                continue  # part of the open `tag` element
            if parents:
                parents[-1].remove(element)
        if (
            fed - last_event > MAX_ELEMENT_BYTES
            or (target_start is not None and fed - target_start > MAX_ELEMENT_BYTES)
            or children > MAX_ELEMENT_CHILDREN
        ):
            raise _refuse(Code.FILE_01, FILE_01_UNREADABLE)
    parser.close()


def _tags(elements: list[Element]) -> Iterator[str]:
    return (element.tag for element in elements)


def _sheet_rows(
    source: io.RawIOBase, shared: _SharedStrings, date_styles: frozenset[int], date1904: bool
) -> Iterator[tuple[int, list[str]]]:
    # openpyxl's own row and cell parsing (what its read-only mode runs), with the cached values
    # of formulas (data_only) and dates left as numbers: they are converted here, where a
    # serial number out of range is not a warning but an ordinary number.
    parser: Any = WorkSheetParser(source, shared, data_only=True)
    epoch = MAC_EPOCH if date1904 else WINDOWS_EPOCH
    last_row = 0
    for element in _bounded_elements(source, _ROW_TAG):
        row_number, cells = parser.parse_row(element)
        parser.row_dimensions.clear()  # openpyxl keeps each row's height; nothing here needs it
        if not last_row < row_number <= MAX_SHEET_ROW:
            raise _refuse(Code.FILE_01, FILE_01_ROW_ORDER)
        last_row = row_number
        texts: dict[int, str] = {}
        for cell in cells:
            text = _cell_text(cell["value"], cell["style_id"], date_styles, epoch)
            if text:
                texts[cell["column"]] = text
        if not texts:
            continue
        width = max(texts)
        if width > MAX_RECORD_CELLS:
            raise _refuse(Code.FILE_01, too_many_cells_message(row_number, MAX_RECORD_CELLS))
        yield row_number, [texts.get(column, "") for column in range(1, width + 1)]


def _cell_text(value: object, style_id: int, date_styles: frozenset[int], epoch: datetime) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return _unescaped(value)
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float) and style_id in date_styles:
        try:
            moment = from_excel(value, epoch)
        except (OverflowError, ValueError, TypeError):
            moment = None
        if isinstance(moment, datetime | date):
            return f"{moment.day:02d}/{moment.month:02d}/{moment.year:04d}"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return shortest_decimal(value)
    if isinstance(value, datetime | date):  # an ISO 8601 date cell (t="d")
        return f"{value.day:02d}/{value.month:02d}/{value.year:04d}"
    return str(value)


def shortest_decimal(number: float) -> str:
    """The shortest text that reads back as `number`, never in exponent form, an integer
    without `.0`: 1234567890.0 is `1234567890`, 1e20 is `100000000000000000000`."""
    if number != number or number in (float("inf"), float("-inf")):
        return repr(number)
    text = format(Decimal(repr(number)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _unescaped(text: str) -> str:
    """ECMA-376 writes characters XML cannot carry as `_xHHHH_` (a carriage return is
    `_x000D_`, a literal `_x` is `_x005F_x`); a NUL stays written out."""
    if "_x" not in text:
        return text
    return _ESCAPED_CHARACTER.sub(_character, text)


def _character(match: re.Match[str]) -> str:
    code = int(match.group(1), 16)
    return match.group(0) if code == 0 else chr(code)


class _CsvOut:
    """CSV records as csv.writer quotes them, in UTF-8 on their way to `out`, counted against
    the size limit (a shared string repeated in many cells writes far more than its XML)."""

    def __init__(self, out: IO[bytes], limit_bytes: int) -> None:
        self._out = out
        self._limit_bytes = limit_bytes
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer)
        self.size_bytes = 0

    def write_record(self, cells: list[str]) -> None:
        self._writer.writerow(cells)
        if self._buffer.tell() >= INFLATE_BLOCK_BYTES:
            self.flush()

    def write_blank_records(self, count: int) -> None:
        self._buffer.write("\r\n" * count)
        self.flush()

    def flush(self) -> None:
        data = self._buffer.getvalue().encode("utf-8", "surrogatepass")
        self._buffer.seek(0)
        self._buffer.truncate()
        self.size_bytes += len(data)
        if self.size_bytes > self._limit_bytes:
            raise _refuse(Code.FILE_03, workbook_too_large_message(self._limit_bytes))
        self._out.write(data)


def write_sheet_csv(
    open_binary: Opener, out: IO[bytes], *, size_limit_bytes: int
) -> FileError | None:
    """Screens the workbook and writes its Achievements sheet to `out` as UTF-8 CSV records,
    one per sheet row (an empty record for each row the sheet leaves out), quoted as
    csv.writer quotes. Returns the file error that refuses the workbook, or None; on an error
    `out` may hold part of the records and must be discarded."""

    def write(workbook: WorkbookFile) -> None:
        guided = workbook.screen()
        csv_out = _CsvOut(out, size_limit_bytes)
        record = 1
        for row_number, cells in workbook.rows(guided):
            if row_number > record:
                csv_out.write_blank_records(row_number - record)
            csv_out.write_record(cells)
            record = row_number + 1
        csv_out.flush()

    return _read(open_binary, size_limit_bytes, write)


def _read(
    open_binary: Opener, size_limit_bytes: int, step: Callable[[WorkbookFile], object]
) -> FileError | None:
    """Runs `step` on the open workbook; a refusal or a damaged file is its file error, found
    here once for every reader of workbooks."""
    with open_binary() as stream:
        workbook = WorkbookFile(stream, size_limit_bytes=size_limit_bytes)
        try:
            step(workbook)
        except _Refused as refused:
            return refused.error
        except _UNREADABLE_ERRORS:
            return FileError(Code.FILE_01, FILE_01_UNREADABLE)
        except OSError as error:
            if not _damaged(error):
                raise  # the storage's own failure (an outage): not the file's
            return FileError(Code.FILE_01, FILE_01_UNREADABLE)
        finally:
            workbook.close()
    return None


# What zipfile, zlib, the XML parser and openpyxl's parser raise on a damaged workbook: a bad
# CRC, a truncated stream, malformed XML, a number that is not one, a shared string index past
# the table, a cell reference or a style it cannot read.
_UNREADABLE_ERRORS: Final = (
    zipfile.BadZipFile,
    zlib.error,
    ParseError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    UnicodeError,
    OverflowError,
    NotImplementedError,  # zipfile: a ZIP version or compression method it does not read
)


def _damaged(error: OSError) -> bool:
    """zipfile seeking to an offset a damaged directory gives (before the file's start):
    EINVAL, the file's fault; any other OSError is the storage's."""
    return error.errno == errno.EINVAL


def screen_workbook(open_binary: Opener, *, size_limit_bytes: int) -> FileError | None:
    """The screen alone (what the gateway runs before it records an upload): None for the
    guided workbook within every bound, else the file error."""
    return _read(open_binary, size_limit_bytes, WorkbookFile.screen)
