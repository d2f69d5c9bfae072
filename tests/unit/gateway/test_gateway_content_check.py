"""The content sniffer refuses workbooks, binary and empty bodies however the chunks fall."""

from __future__ import annotations

import pytest

from services.upload_gateway.content_check import ContentSniffer, FileRefused


def sniff(*chunks: bytes) -> None:
    sniffer = ContentSniffer()
    for chunk in chunks:
        sniffer.feed(chunk)
    sniffer.finish()


def refusal(*chunks: bytes) -> str:
    with pytest.raises(FileRefused) as refused:
        sniff(*chunks)
    return refused.value.code


@pytest.mark.parametrize(
    "chunks",
    [
        (b"PK\x03\x04\x14\x00",),
        (b"P", b"K\x03", b"\x04rest"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1more",),
        (b"\xd0\xcf\x11\xe0", b"\xa1\xb1\x1a\xe1"),
    ],
)
def test_workbook_signatures_are_file_01_even_split_across_chunks(
    chunks: tuple[bytes, ...],
) -> None:
    assert refusal(*chunks) == "FILE_01"


def test_a_nul_byte_anywhere_is_file_01_at_once() -> None:
    sniffer = ContentSniffer()
    sniffer.feed(b"CourseCode\r\n" * 1000)
    with pytest.raises(FileRefused) as refused:
        sniffer.feed(b"abc\x00def")
    assert refused.value.code == "FILE_01"
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
