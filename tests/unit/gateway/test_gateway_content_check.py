"""The content sniffer refuses .xls workbooks, binary, undecodable and empty bodies however the
chunks fall, with the scheme's own messages; a ZIP body is left to the workbook screen."""

from __future__ import annotations

import pytest

from services.core.scheme.codes import (
    FILE_01_NUL,
    FILE_01_WORKBOOK,
    FILE_02_EMPTY,
    MESSAGES,
    Code,
)
from services.core.scheme.file_inspection import FileInspector
from services.upload_gateway.content_check import ContentSniffer, FileRefused

LIMIT_BYTES = 200 * 1024 * 1024


def sniff(*chunks: bytes) -> None:
    sniffer = ContentSniffer(LIMIT_BYTES)
    for chunk in chunks:
        sniffer.feed(chunk)
    sniffer.finish()


def refusal(*chunks: bytes) -> str:
    with pytest.raises(FileRefused) as refused:
        sniff(*chunks)
    return refused.value.code


def refused_with(*chunks: bytes) -> tuple[str, str]:
    with pytest.raises(FileRefused) as refused:
        sniff(*chunks)
    return refused.value.code, refused.value.message


@pytest.mark.parametrize(
    "chunks",
    [
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1more",),
        (b"\xd0\xcf\x11\xe0", b"\xa1\xb1\x1a\xe1"),
    ],
)
def test_the_xls_signature_is_file_01_even_split_across_chunks(
    chunks: tuple[bytes, ...],
) -> None:
    assert refusal(*chunks) == "FILE_01"


@pytest.mark.parametrize(
    "chunks",
    [
        (b"PK\x03\x04\x14\x00",),
        (b"P", b"K\x03", b"\x04rest"),
        (b"PK\x03\x04", b"\x00" * 100, b"a\x00b\xff"),  # NUL and any bytes: the ZIP's own
    ],
)
def test_a_zip_body_is_stored_for_the_workbook_screen_even_split_across_chunks(
    chunks: tuple[bytes, ...],
) -> None:
    sniffer = ContentSniffer(LIMIT_BYTES)
    for chunk in chunks:
        sniffer.feed(chunk)
    sniffer.finish()
    assert sniffer.workbook


def test_a_nul_byte_anywhere_is_file_01_at_once() -> None:
    sniffer = ContentSniffer(LIMIT_BYTES)
    sniffer.feed(b"CourseCode\r\n" * 1000)
    with pytest.raises(FileRefused) as refused:
        sniffer.feed(b"abc\x00def")
    assert refused.value.code == "FILE_01"
    assert refused.value.message == FILE_01_NUL
    assert "CSV (Comma delimited)" in refused.value.message


def test_a_utf16_export_is_file_01() -> None:
    assert refusal("CourseCode".encode("utf-16")) == "FILE_01"


@pytest.mark.parametrize(
    "chunks",
    [(), (b"",), (b"\xef\xbb\xbf",), (b"\xef", b"\xbb\xbf", b" \r\n"), (b"  \t\r\n", b"\n\n")],
)
def test_nothing_but_a_bom_and_white_space_is_file_02(chunks: tuple[bytes, ...]) -> None:
    assert refusal(*chunks) == "FILE_02"


@pytest.mark.parametrize(
    "chunks",
    [
        (b"CourseCode\r\n",),
        (b"\xef\xbb\xbfa",),
        (b"\xef\xbb", b"\xbfa"),
        (b"   ", b"x"),
        (b"\xef",),  # a fragment of a mark is not white space (the validator decides)
        (b"\xef", b"A"),
        (b"PK",),  # too short to be a workbook
    ],
)
def test_text_content_passes(chunks: tuple[bytes, ...]) -> None:
    sniff(*chunks)


def test_a_bom_later_in_the_file_is_content() -> None:
    sniff(b" ", b"\xef\xbb\xbf")


def test_the_messages_are_the_schemes_own() -> None:
    assert refused_with(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1") == ("FILE_01", FILE_01_WORKBOOK)
    assert refused_with(b"a\x00b") == ("FILE_01", FILE_01_NUL)
    assert refused_with(b"\xef\xbb\xbf \r\n") == ("FILE_02", FILE_02_EMPTY)
    assert refused_with(b"\xff\x81 neither") == ("FILE_06", MESSAGES[Code.FILE_06])


def test_an_xls_workbook_is_refused_as_soon_as_the_signature_bytes_are_in() -> None:
    sniffer = ContentSniffer(LIMIT_BYTES)
    sniffer.feed(b"\xd0\xcf\x11\xe0")
    sniffer.feed(b"\xa1\xb1\x1a")  # fewer bytes than the signature: not decided yet
    with pytest.raises(FileRefused) as refused:
        sniffer.feed(b"\xe1" + b"x" * 8)
    assert refused.value.code == "FILE_01"


def test_undecodable_bytes_are_file_06_at_once() -> None:
    sniffer = ContentSniffer(LIMIT_BYTES)
    sniffer.feed(b"CourseCode,ULN\r\n")
    sniffer.feed(b"caf\xe9\r\n")  # not UTF-8, but Windows-1252: still text
    with pytest.raises(FileRefused) as refused:
        sniffer.feed(b"\x81\r\n")  # undefined in Windows-1252 too
    assert refused.value.code == "FILE_06"


@pytest.mark.parametrize(
    "content",
    [
        b"CourseCode\r\n" + b"x" * (2 * 1024 * 1024),  # a line too long: the validator's call
        b"caf\xe9\r\n",  # Windows-1252
        b"anything,at all\r\n",  # headers are the validator's call
    ],
)
def test_what_the_validator_decides_passes_the_gateway(content: bytes) -> None:
    sniff(*(content[i : i + 256 * 1024] for i in range(0, len(content), 256 * 1024)))


def test_the_size_limit_is_left_to_the_storage() -> None:
    sniffer = ContentSniffer(4)
    sniffer.feed(b"CourseCode\r\n")
    sniffer.finish()


@pytest.mark.parametrize(
    "content",
    [
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        b"a\x00",
        b"\x81\xff",
        b"",
        b" \r\n",
        b"CourseCode\r\n",
        b"\xe9",
    ],
)
def test_the_gateway_and_the_validator_agree(content: bytes) -> None:
    inspector = FileInspector(LIMIT_BYTES)
    inspector.feed(content)
    expected = inspector.finish().error
    if expected is None:
        sniff(content)
        return
    assert refused_with(content) == (expected.code, expected.message)
