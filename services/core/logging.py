"""structlog set-up: context bound per upload/row, never learner data.

On a terminal the lines are readable and in colour; anywhere else (a file, a pipe, a container's
log collector) they are JSON lines, one object each, the libraries' lines too. `LOG_FORMAT`
(`json` or `console`) overrides the choice, e.g. JSON on a terminal to test a log pipeline;
`NO_COLOR` (any value) keeps a terminal's lines plain JSON too.
"""

from __future__ import annotations

import logging
import sys
from typing import Final, Literal, TextIO

import structlog
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LOG_FORMAT_VARIABLE: Final = "LOG_FORMAT"


class LogOutput(BaseSettings):
    """How the lines look: the conventional unprefixed variables."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    log_format: Literal["json", "console"] | None = Field(
        default=None, validation_alias=LOG_FORMAT_VARIABLE
    )
    # https://no-color.org: set to anything, colour is off.
    no_color: str | None = Field(default=None, validation_alias="NO_COLOR")


def wants_console(stream: TextIO, output: LogOutput) -> bool:
    """Readable colour output for a terminal; JSON otherwise, or as `LOG_FORMAT` says."""
    if output.log_format is not None:
        return output.log_format == "console"
    return stream.isatty() and output.no_color is None


def configure_logging(
    service: str, level: str = "INFO", output: LogOutput | None = None, console: bool | None = None
) -> None:
    """`console`: None decides by the output and the settings (`wants_console`)."""
    if console is None:
        console = wants_console(sys.stderr, output if output is not None else LogOutput())
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
