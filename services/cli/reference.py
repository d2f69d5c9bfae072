"""`achievements reference load [DIR]`: the course catalogue and levy register as a new version
(running workers pick it up without a restart)."""

from __future__ import annotations

from pathlib import Path

import click

from services.cli.connect import database
from services.cli.context import CliContext, pass_cli
from services.cli.failures import CommandFailed, ExitCode
from services.cli.options import CONTEXT_SETTINGS, json_option
from services.cli.output import print_json, run
from services.cli.settings import build_settings
from services.core.settings import CommonSettings


@click.group(context_settings=CONTEXT_SETTINGS, help="Reference data.")
def reference() -> None:
    pass


@reference.command(help="Load courses.csv and employers.csv from DIR (default: the bundled copy).")
@click.argument("directory", metavar="DIR", required=False, type=click.Path(path_type=Path))
@click.option(
    "--if-missing",
    is_flag=True,
    help="only when no version is loaded yet (a deployment's first start)",
)
@json_option
@pass_cli
def load(context: CliContext, directory: Path | None, if_missing: bool, as_json: bool) -> int:
    async def command() -> int:
        from services.core.reference_store import load_into_database

        common = build_settings(CommonSettings)
        async with database(common.postgres, context.connect_timeout_s) as connection:
            if if_missing:
                loaded = await connection.fetchval(
                    "SELECT version FROM reference_versions WHERE id = 1"
                )
                if loaded is not None:
                    if as_json:
                        print_json({"version": loaded, "loaded": False})
                    else:
                        print(f"reference data already loaded (version {loaded}); nothing done")
                    return ExitCode.OK
            try:
                version = await load_into_database(connection, directory)
            except ValueError as invalid:
                raise CommandFailed(
                    ExitCode.FILE_UNREADABLE, "REFERENCE_INVALID", str(invalid)
                ) from None
        if as_json:
            print_json({"version": version, "loaded": True})
        else:
            print(f"reference data loaded (version {version})")
        return ExitCode.OK

    return run(command, as_json)
