"""The environment of the processes the tests start, and of the test process itself.

A started service gets only what it needs to run (`PASSED_ON`) plus the settings the test gives
it, never the test process's whole environment: a variable exported in the shell that ran
`make test` (a production `DATABASE_URL`, a `KAFKA_SECURITY_PROTOCOL`) must not reach what a test
builds. The test process itself drops the project's variables at start (tests/conftest.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# Starting Python and a service's imports takes seconds; one still running after this took its
# refusal for an outage: a failure, not a wait.
SERVICE_EXIT_LIMIT_S = 60

# What a Python process needs from its parent to run like the test process: where programs are,
# a home folder, the locale (file names and stderr encoding), the time zone and a temporary folder.
PASSED_ON = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")

# The variables the project's processes read: its settings classes (services/*/settings.py),
# the log format, libpq's TLS variables (asyncpg reads them) and the CLI's ATO key.
PROJECT_PREFIXES = (
    "KAFKA_",
    "GATEWAY_",
    "VALIDATOR_",
    "GRANT_BRIDGE_",
    "GRANT_STANDIN_",
    "PORTAL_STANDIN_",
    "EXPORTER_",
    "RETENTION_",
    "STORAGE_",
    "SCHEME_",
    "DB_",
    "PGSSL",
    # S3 credentials and region, as the storage backend reads them (AWS_ACCESS_KEY_ID, ...).
    "AWS_",
    "ACHIEVEMENTS_",
)
PROJECT_NAMES = frozenset(
    {"DATABASE_URL", "DEPLOYMENT_MODE", "LOG_LEVEL", "LOG_FORMAT", "ACHIEVEMENTS_API_KEY"}
)


def is_project_variable(name: str) -> bool:
    return name in PROJECT_NAMES or name.startswith(PROJECT_PREFIXES)


def strip_project_variables(environ: MutableMapping[str, str]) -> list[str]:
    """Removes the project's variables from `environ`; returns their names (never values)."""
    names = sorted(name for name in environ if is_project_variable(name))
    for name in names:
        del environ[name]
    return names


def service_env(settings: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a service a test starts: `PASSED_ON` from this process, then
    `settings` (the test's own, each given explicitly)."""
    passed_on = {name: os.environ[name] for name in PASSED_ON if name in os.environ}
    return {**passed_on, **settings}


def run_service(module: str, settings: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m MODULE` from the repository with `service_env(settings)`, run to its exit (a
    service that refuses its settings), its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", module],
        cwd=REPO_ROOT,
        env=service_env(settings),
        capture_output=True,
        text=True,
        timeout=SERVICE_EXIT_LIMIT_S,
        check=False,
    )
