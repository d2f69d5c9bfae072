"""The pure modules (the CSV scheme, events, masking, the bridge's breaker and back-off, the
offline check) load no database, broker or HTTP library: they run anywhere, and the gateway,
validators and offline check share exactly this code."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import services.core.scheme

REPO = Path(__file__).parents[3]
IO_LIBRARIES = ("asyncpg", "aiokafka", "aiohttp", "kafka", "psycopg", "requests", "httpx")
SCHEME_MODULES = [
    f"services.core.scheme.{module.name}"
    for module in pkgutil.iter_modules(services.core.scheme.__path__)
]
PURE_MODULES = [
    "services.core.scheme",
    *SCHEME_MODULES,
    "services.core.events",
    "services.core.masking",
    "services.core.states",
    "services.grant_bridge.circuit_breaker",
    "services.grant_bridge.backoff",
    "services.core.misconfiguration",
    "services.upload_gateway.domain_errors",
]
# Imports each module in a fresh interpreter and names the I/O libraries it pulled in.
PROGRAM = f"""
import importlib, json, sys
io_libraries = {IO_LIBRARIES!r}
loaded = {{}}
for module in sys.argv[1:]:
    importlib.import_module(module)
    loaded[module] = sorted(m for m in io_libraries if m in sys.modules)
print(json.dumps(loaded))
"""


def io_libraries_loaded_by(*modules: str) -> dict[str, list[str]]:
    completed = subprocess.run(
        [sys.executable, "-c", PROGRAM, *modules],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded: dict[str, list[str]] = json.loads(completed.stdout)
    return loaded


def test_the_scheme_package_is_found_module_by_module() -> None:
    assert {"services.core.scheme.rules", "services.core.scheme.check"} <= set(SCHEME_MODULES)


def test_importing_the_pure_modules_loads_no_io_library() -> None:
    loaded = io_libraries_loaded_by(*PURE_MODULES)
    assert list(loaded) == PURE_MODULES
    assert {module: libs for module, libs in loaded.items() if libs} == {}


def test_the_check_notices_a_module_that_loads_an_io_library() -> None:
    # The adapters import asyncpg: the check above would see it if a pure module did.
    loaded = io_libraries_loaded_by("services.core.events", "services.core.db")
    assert loaded == {"services.core.events": [], "services.core.db": ["asyncpg"]}
