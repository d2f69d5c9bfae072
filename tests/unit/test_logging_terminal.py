"""Logs are readable and in colour on a terminal, JSON lines anywhere else, and neither shows a
frame's locals (a row's cells)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.core.logging import LogOutput, wants_console

REPO = Path(__file__).parents[2]
PROGRAM = """
import sys
from services.core.logging import configure_logging, get_logger

configure_logging("validator", console={console})
log = get_logger()
log.info("chunk_validated", rows=20)

def validate_row():
    forename = "Zebedee"  # a local no traceback may show
    raise ValueError("row could not be stored")

try:
    validate_row()
except ValueError:
    log.error("row_store_failed", exc_info=True)
"""


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(console: bool) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(console=console)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stderr


def test_a_terminal_gets_colour_and_anything_else_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    assert wants_console(Terminal(), LogOutput())
    assert not wants_console(io.StringIO(), LogOutput())
    monkeypatch.setenv("LOG_FORMAT", "json")
    assert not wants_console(Terminal(), LogOutput())
    monkeypatch.setenv("LOG_FORMAT", "console")
    assert wants_console(io.StringIO(), LogOutput())
    monkeypatch.delenv("LOG_FORMAT")
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_console(Terminal(), LogOutput())


def test_console_lines_are_coloured_and_show_no_locals() -> None:
    output = run(console=True)
    assert "\x1b[" in output
    assert "chunk_validated" in output
    assert "row could not be stored" in output
    assert "Zebedee" not in output


def test_json_lines_parse_and_show_no_locals() -> None:
    lines = [json.loads(line) for line in run(console=False).splitlines()]
    assert [line["event"] for line in lines] == ["chunk_validated", "row_store_failed"]
    assert "Zebedee" not in json.dumps(lines)
