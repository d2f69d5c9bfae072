"""The planner's answer for each encoding the byte-level pass can settle on, and for a file
error found after the first bytes. Expected segments written by hand: (start byte, end byte,
first row)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from services.core.scheme.codes import Code
from services.core.scheme.columns import COLUMNS
from services.core.storage import FolderStorage
from services.validator.planner import plan_file
from services.validator.settings import ValidatorSettings

LIMIT = 200 * 1024 * 1024
HEADER = ",".join(spec.header for spec in COLUMNS) + "\r\n"
ROWS = 'Zoë,SD-WAH-101,"PO 4471, cohort B"\r\nSeán,SD-WAH-101,"said ""thanks"""\r\n'


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def planned(tmp_path: Path, data: bytes) -> tuple[object, ...]:
    storage = FolderStorage(tmp_path)
    await storage.put("uploads/u.csv", chunks(data), LIMIT)
    plan = plan_file(storage, "uploads/u.csv", ValidatorSettings())
    code = plan.file_error.code if plan.file_error else None
    return plan.encoding, code, plan.chunks


async def test_a_utf8_file_is_planned_from_its_header_on(tmp_path: Path) -> None:
    data = (HEADER + ROWS).encode()
    header_bytes = len(HEADER)  # ASCII
    assert await planned(tmp_path, data) == ("utf-8", None, [[(header_bytes, len(data), 2)]])


async def test_a_file_with_the_utf8_mark_is_planned_past_the_mark(tmp_path: Path) -> None:
    data = b"\xef\xbb\xbf" + (HEADER + ROWS).encode()
    assert await planned(tmp_path, data) == (
        "utf-8-sig",
        None,
        [[(3 + len(HEADER), len(data), 2)]],
    )


async def test_a_windows_1252_file_is_planned_with_its_own_encoding(tmp_path: Path) -> None:
    data = (HEADER + ROWS).encode("cp1252")  # ë and á one byte each: not UTF-8
    assert b"Zo\xeb," in data
    assert await planned(tmp_path, data) == (
        "windows-1252",
        None,
        [[(len(HEADER), len(data), 2)]],
    )


async def test_a_file_error_found_late_leaves_no_chunks(tmp_path: Path) -> None:
    data = (HEADER + ROWS).encode() + b"\x00\x00"
    encoding, code, found = await planned(tmp_path, data)
    assert (encoding, code, found) == (None, Code.FILE_01, [])
