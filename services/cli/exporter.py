"""`achievements exporter serve [--host H] [--port N]`: the operations exporter
(services/core/ops_exporter.py), a long-running process beside the services: the consumer lag
of the pipeline's groups measured from outside them, and the retention purge's runs.

Unlike the other commands it never gives up on Kafka or PostgreSQL: reporting them away is its
work (`achievements_exporter_source_up`), so `--connect-timeout` does not apply; each scrape
tries them again within `EXPORTER_READ_TIMEOUT_S`. SIGTERM or Ctrl-C ends it (exit 0)."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import click

from services.cli.failures import CommandFailed, ExitCode
from services.cli.options import CONTEXT_SETTINGS, json_lines_option
from services.cli.output import print_json, run
from services.cli.settings import build_settings
from services.core.ops_exporter import ExporterSettings
from services.core.ops_exporter import serve as serve_exporter


@click.group(
    context_settings=CONTEXT_SETTINGS,
    help="The operations exporter: consumer lag from outside the groups, the purge's runs.",
)
def exporter() -> None:
    pass


@exporter.command(
    context_settings=CONTEXT_SETTINGS,
    help="Serve /metrics and /healthz until stopped: the lag of the validator and grant-bridge"
    " groups (committed offsets against end offsets, joining no group) and the retention"
    " purge's runs from PostgreSQL (EXPORTER_*; docs/operations.md, Metrics).",
)
@click.option("--host", help="address to listen on (default: EXPORTER_HOST, else 0.0.0.0)")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="port to listen on (default: EXPORTER_PORT, else 9141)",
)
@json_lines_option
def serve(host: str | None, port: int | None, as_json: bool) -> int:
    async def command() -> int:
        settings = build_settings(ExporterSettings)
        chosen = settings.model_copy(
            update={
                "host": host if host is not None else settings.host,
                "port": port if port is not None else settings.port,
            }
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            # Only the main thread may handle signals; a caller in another thread sets `stop`.
            with contextlib.suppress(ValueError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)

        def listening(bound_host: str, bound_port: int) -> None:
            if as_json:
                print_json({"status": "serving", "host": bound_host, "port": bound_port})
            else:
                print(f"serving /metrics and /healthz on {bound_host}:{bound_port}", flush=True)

        try:
            await serve_exporter(chosen, stop, started=listening)
        except OSError as error:  # the address: in use, or not this machine's
            raise CommandFailed(
                ExitCode.UNAVAILABLE,
                "ADDRESS_UNAVAILABLE",
                f"cannot listen on {chosen.host}:{chosen.port}: {error.strerror or error}",
            ) from None
        return ExitCode.OK

    return run(command, as_json)
