"""A service's output is JSON lines, its own and its libraries' alike, and a logged exception
carries no frame locals (they would be a row's cells, i.e. learner data)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).parents[3]
PROGRAM = """
import logging
from services.core.logging import configure_logging, get_logger

configure_logging("validator")
log = get_logger()
logging.getLogger("aiokafka.consumer.group_coordinator").warning(
    "Heartbeat failed for group %s because it is rebalancing", "g1"
)

def validate_row():
    forename = "Zebedee"  # a local the traceback must not show
    raise ValueError("row could not be stored")

try:
    validate_row()
except ValueError:
    log.error("row_store_failed", exc_info=True)
    logging.getLogger("aiohttp.server").exception("Error handling request")
"""


@pytest.fixture(scope="module")
def service_output() -> list[dict[str, Any]]:
    completed = subprocess.run(
        [sys.executable, "-c", PROGRAM], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert completed.stdout == ""
    assert "Zebedee" not in completed.stderr
    return [json.loads(line) for line in completed.stderr.splitlines() if line.strip()]


def test_every_line_is_json_with_an_event_level_and_service(
    service_output: list[dict[str, Any]],
) -> None:
    lines = service_output
    assert [line["event"] for line in lines] == [
        "Heartbeat failed for group g1 because it is rebalancing",
        "row_store_failed",
        "Error handling request",
    ]
    assert {line["service"] for line in lines} == {"validator"}
    assert [line["level"] for line in lines] == ["warning", "error", "error"]


def test_library_lines_name_their_logger(service_output: list[dict[str, Any]]) -> None:
    library, own, _ = service_output
    assert library["logger"] == "aiokafka.consumer.group_coordinator"
    assert "logger" not in own


def test_logged_exceptions_keep_type_and_frames_but_no_locals(
    service_output: list[dict[str, Any]],
) -> None:
    _, own, library = service_output
    for line in (own, library):
        (exception,) = line["exception"]
        assert exception["exc_type"] == "ValueError"
        assert [frame["name"] for frame in exception["frames"]][-1] == "validate_row"
        assert all("locals" not in frame for frame in exception["frames"])
