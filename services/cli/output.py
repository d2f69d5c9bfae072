"""How a command speaks: one JSON object (or, streaming, one per line) on stdout with `--json`,
readable lines without it, and a failure as `{"code", "message", ...}` or one line on stderr.

`run` is the one place a command's coroutine is run: whatever it raises becomes the documented
exit status and failure, never a traceback on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from services.cli.failures import CommandFailed, ExitCode, translate
from services.core.logging import get_logger

log = get_logger()


def print_json(value: object) -> None:
    """One JSON object on one line, flushed: a reader of a stream sees each as it comes."""
    print(json.dumps(value, default=str), flush=True)


def print_fields(value: dict[str, Any]) -> None:
    for name, field in value.items():
        print(f"{name}: {field}")


def report_failure(failed: CommandFailed, as_json: bool) -> int:
    """The failure on stdout as one JSON object (`--json`), else one line on stderr; returns
    its exit status."""
    if as_json:
        print_json(failed.to_json())
    else:
        print(f"achievements: {failed.code}: {failed.message}", file=sys.stderr, flush=True)
    return int(failed.exit_code)


def run(command: Callable[[], Coroutine[Any, Any, int]], as_json: bool) -> int:
    """Runs a command's coroutine in its own event loop, turning what it ran into into the
    documented exit status (and, with `--json`, one JSON object)."""
    try:
        return asyncio.run(command())
    except KeyboardInterrupt:
        return report_failure(
            CommandFailed(ExitCode.INTERRUPTED, "INTERRUPTED", "interrupted"), as_json
        )
    except Exception as error:
        failed = translate(error)
        # The details for whoever fixes it go to the log, which is on stderr only once the
        # process configured it (`main`); unconfigured, structlog would print on stdout.
        if failed.exit_code is ExitCode.INTERNAL_ERROR and structlog.is_configured():
            # The type and where it was raised, never the message or a traceback's text: an
            # unforeseen error's message may quote a row's cells.
            log.error(
                "command_failed_unexpectedly", error=type(error).__name__, raised_at=_origin(error)
            )
        return report_failure(failed, as_json)


def _origin(error: BaseException) -> str:
    """`module:function:line` of the frame that raised `error` (the innermost one)."""
    trace = error.__traceback__
    if trace is None:
        return "unknown"
    while trace.tb_next is not None:
        trace = trace.tb_next
    code = trace.tb_frame.f_code
    return f"{trace.tb_frame.f_globals.get('__name__', '?')}:{code.co_name}:{trace.tb_lineno}"
