"""Options several commands share, spelled once."""

from __future__ import annotations

from typing import Final

import click

DEFAULT_GATEWAY: Final = "http://127.0.0.1:8080"
GATEWAY_VARIABLE: Final = "ACHIEVEMENTS_GATEWAY_URL"

# `-h` too: an operator types it first.
CONTEXT_SETTINGS: Final = {"help_option_names": ["-h", "--help"]}

json_option = click.option(
    "--json", "as_json", is_flag=True, help="one JSON object on stdout, on success and on failure"
)
json_lines_option = click.option(
    "--json", "as_json", is_flag=True, help="one JSON object per line (JSON lines), failures too"
)
gateway_option = click.option(
    "--gateway",
    envvar=GATEWAY_VARIABLE,
    default=DEFAULT_GATEWAY,
    show_default=True,
    help=f"the gateway's URL (or {GATEWAY_VARIABLE})",
)
