"""The scheme package is pure: importing all of it loads no database, broker or HTTP library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[3]
IO_LIBRARIES = ("asyncpg", "aiokafka", "aiohttp", "kafka", "psycopg", "requests", "httpx")
MODULES = (
    "check",
    "codes",
    "columns",
    "file_inspection",
    "outcome",
    "records",
    "reference",
    "rules",
    "scheme_document",
    "text",
    "validation",
)


def test_importing_every_scheme_module_loads_no_io_library() -> None:
    imports = "; ".join(f"import services.core.scheme.{module}" for module in MODULES)
    program = (
        f"import sys; {imports}; "
        f"loaded = [m for m in {IO_LIBRARIES!r} if m in sys.modules]; "
        "print(','.join(loaded))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == ""


def test_the_offline_check_command_loads_no_io_library_either() -> None:
    program = (
        "import sys; import services.validator.offline_check; "
        f"print(','.join(m for m in {IO_LIBRARIES!r} if m in sys.modules))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert completed.stdout.strip() == ""
