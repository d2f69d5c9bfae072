"""structlog set-up: context bound per upload/row, never learner data.

On a terminal the lines are readable and in colour; anywhere else (a file, a pipe, a container's
log collector) they are JSON lines, one object each, the libraries' lines too. `LOG_FORMAT`
(`json` or `console`) overrides the choice, e.g. JSON on a terminal to test a log pipeline.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Final, TextIO

import structlog

LOG_FORMAT_VARIABLE: Final = "LOG_FORMAT"


def wants_console(stream: TextIO, override: str | None = None) -> bool:
    """Readable colour output for a terminal; JSON otherwise, or as `override` says."""
    choice = (override or "").strip().lower()
    if choice in ("json", "console"):
        return choice == "console"
    return stream.isatty() and "NO_COLOR" not in os.environ


def configure_logging(service: str, level: str = "INFO", console: bool | None = None) -> None:
    """`console`: None decides by the output (`wants_console`)."""
    if console is None:
        console = wants_console(sys.stderr, os.environ.get(LOG_FORMAT_VARIABLE))
    # Locals off: a frame's locals are a row's cells, i.e. learner data.
    tracebacks = structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    rendering: list[structlog.typing.Processor]
    if console:
        # The console renderer draws the traceback itself, again without locals.
        rendering = [
            structlog.dev.ConsoleRenderer(
                colors=True,
                exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False),
            )
        ]
    else:
        rendering = [tracebacks, structlog.processors.JSONRenderer()]
    # Third-party libraries log through the standard library: render their lines the same way,
    # so every line a service writes parses (or reads alike on a terminal).
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *rendering],
        )
    )
    logging.basicConfig(handlers=[handler], level=level.upper())
    # Third-party libraries log connection chatter at INFO; keep ours readable.
    for noisy in ("aiokafka", "kafka", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, *rendering],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


def get_logger() -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger()
    return logger
