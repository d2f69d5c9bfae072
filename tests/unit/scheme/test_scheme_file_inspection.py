"""The bytes-level pass: size, NUL bytes and workbooks, encodings, emptiness, absurd lines."""

from __future__ import annotations

import io

import pytest
from scheme_builders import HEADER_LINE

from services.core.scheme.codes import Code
from services.core.scheme.file_inspection import (
    MAX_LINE_BYTES,
    Encoding,
    FileInspector,
    Inspection,
    inspect_stream,
    size_error,
)

CSV = f"{HEADER_LINE}\r\nR1,SD-WAH-101,12/11/2026,Zoë,Brontë,1/1/1990,1000000043,,,,£5 café\r\n"


def inspect(
    data: bytes, *, chunk_bytes: int = 1 << 20, size_limit_bytes: int = 1 << 30
) -> Inspection:
    return inspect_stream(
        io.BytesIO(data), chunk_bytes=chunk_bytes, size_limit_bytes=size_limit_bytes
    )


def error_code(inspection: Inspection) -> str | None:
    return None if inspection.error is None else inspection.error.code.value


class TestEncodings:
    def test_utf8_without_bom(self) -> None:
        assert inspect(CSV.encode("utf-8")) == Inspection(Encoding.UTF_8, None)

    def test_utf8_with_bom_is_utf8_sig(self) -> None:
        assert inspect(CSV.encode("utf-8-sig")) == Inspection(Encoding.UTF_8_SIG, None)

    def test_cp1252_with_pound_and_accents_is_windows_1252(self) -> None:
        assert inspect(CSV.encode("cp1252")) == Inspection(Encoding.WINDOWS_1252, None)

    def test_pure_ascii_is_utf8(self) -> None:
        assert inspect(b"a,b\r\n").encoding is Encoding.UTF_8

    @pytest.mark.parametrize("undefined", [b"\x81", b"\x8d", b"\x8f", b"\x90", b"\x9d"])
    def test_not_utf8_with_an_undefined_cp1252_byte_is_file_06(self, undefined: bytes) -> None:
        inspection = inspect(CSV.encode("cp1252") + undefined)
        assert error_code(inspection) == "FILE_06"
        assert inspection.encoding is None

    def test_undefined_cp1252_byte_inside_valid_utf8_is_fine(self) -> None:
        # U+0441 is D1 81 in UTF-8: 0x81 as a continuation byte.
        assert inspect("с,b\r\n".encode()).encoding is Encoding.UTF_8

    def test_utf8_truncated_at_the_end_falls_back_to_cp1252(self) -> None:
        assert inspect(b"a,b\r\nc\xc3").encoding is Encoding.WINDOWS_1252

    def test_bom_followed_by_invalid_utf8_is_read_as_cp1252(self) -> None:
        assert inspect(b"\xef\xbb\xbfa,\xe9\r\n").encoding is Encoding.WINDOWS_1252

    def test_multibyte_characters_split_across_chunks_are_still_utf8(self) -> None:
        data = CSV.encode("utf-8") * 3
        for chunk_bytes in (1, 2, 3, 7):
            assert inspect(data, chunk_bytes=chunk_bytes).encoding is Encoding.UTF_8


class TestNotText:
    def test_utf16_is_file_01_because_of_nul_bytes(self) -> None:
        inspection = inspect(CSV.encode("utf-16"))
        assert error_code(inspection) == "FILE_01"
        assert inspection.error is not None
        assert "NUL" in inspection.error.message

    def test_utf16_big_endian_without_bom_is_file_01(self) -> None:
        assert error_code(inspect(CSV.encode("utf-16-be"))) == "FILE_01"

    def test_a_single_nul_byte_anywhere_is_file_01(self) -> None:
        assert error_code(inspect(CSV.encode() + b"\x00")) == "FILE_01"

    def test_xlsx_zip_signature_is_file_01_saying_export_as_csv(self) -> None:
        inspection = inspect(b"PK\x03\x04\x14\x00\x06\x00" + b"x" * 100)
        assert error_code(inspection) == "FILE_01"
        assert inspection.error is not None
        assert "export it as 'CSV" in inspection.error.message

    def test_xls_ole_signature_is_file_01_saying_export_as_csv(self) -> None:
        inspection = inspect(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100)
        assert inspection.error is not None
        assert "workbook" in inspection.error.message

    def test_signature_split_over_tiny_chunks_is_still_recognised(self) -> None:
        assert error_code(inspect(b"PK\x03\x04rest-of-zip", chunk_bytes=1)) == "FILE_01"

    def test_nul_bytes_outrank_decoding(self) -> None:
        assert error_code(inspect(b"\x81\x00")) == "FILE_01"


class TestEmpty:
    @pytest.mark.parametrize(
        "data",
        [b"", b"\xef\xbb\xbf", b" \r\n\t\r\n", "\u00a0\u3000\r\n".encode(), b"\xa0\r\n"],
    )
    def test_no_bytes_only_a_bom_or_only_white_space_is_file_02(self, data: bytes) -> None:
        assert error_code(inspect(data)) == "FILE_02"

    def test_empty_file_still_reports_its_encoding(self) -> None:
        assert inspect(b"\xef\xbb\xbf").encoding is Encoding.UTF_8_SIG

    def test_decoding_outranks_empty(self) -> None:
        assert error_code(inspect(b" \x81 ")) == "FILE_06"

    def test_a_single_character_is_not_empty(self) -> None:
        assert inspect(b"a").error is None


class TestSize:
    def test_over_the_limit_is_file_03_and_outranks_everything(self) -> None:
        inspection = inspect(b"\x00" * 11, size_limit_bytes=10)
        assert error_code(inspection) == "FILE_03"
        assert inspection.encoding is None

    def test_exactly_the_limit_is_allowed(self) -> None:
        assert inspect(b"a" * 10, size_limit_bytes=10).error is None

    def test_the_message_names_the_limit_in_megabytes(self) -> None:
        error = size_error(200 * 1024 * 1024 + 1, 200 * 1024 * 1024)
        assert error is not None
        assert error.code is Code.FILE_03
        assert "200 MB" in error.message
        assert size_error(200 * 1024 * 1024, 200 * 1024 * 1024) is None

    def test_the_inspector_says_when_to_stop_reading(self) -> None:
        inspector = FileInspector(size_limit_bytes=4)
        inspector.feed(b"abc")
        assert not inspector.size_exceeded
        inspector.feed(b"de")
        assert inspector.size_exceeded
        assert inspector.finish().error is not None


class TestLongLines:
    def test_a_line_over_the_limit_is_file_01(self) -> None:
        data = b"a," + b"x" * MAX_LINE_BYTES + b"\r\nb\r\n"
        inspection = inspect(data, chunk_bytes=64 * 1024)
        assert error_code(inspection) == "FILE_01"
        assert inspection.encoding is Encoding.UTF_8

    def test_a_line_of_exactly_the_limit_is_fine(self) -> None:
        data = b"x" * MAX_LINE_BYTES + b"\n" + b"y" * MAX_LINE_BYTES
        assert inspect(data, chunk_bytes=100_000).error is None

    def test_long_lines_are_found_whatever_the_chunk_size(self) -> None:
        data = b"a\n" + b"x" * (MAX_LINE_BYTES + 1) + b"\nb"
        for chunk_bytes in (1000, MAX_LINE_BYTES, 4 * MAX_LINE_BYTES):
            assert error_code(inspect(data, chunk_bytes=chunk_bytes)) == "FILE_01"

    def test_empty_outranks_a_long_line(self) -> None:
        assert error_code(inspect(b" " * (MAX_LINE_BYTES + 10))) == "FILE_02"


class TestStreaming:
    def test_the_verdict_is_known_early_for_nul_bytes(self) -> None:
        inspector = FileInspector()
        inspector.feed(b"ProviderReference\x00")
        assert inspector.verdict_known
        inspector.feed(b"more bytes that change nothing")
        assert error_code(inspector.finish()) == "FILE_01"

    def test_a_file_shorter_than_the_signature_is_inspected_at_finish(self) -> None:
        inspector = FileInspector()
        inspector.feed(b"a,")
        inspector.feed(b"b")
        assert inspector.finish() == Inspection(Encoding.UTF_8, None)
