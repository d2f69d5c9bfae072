"""The ATO API key of the ATO's commands: from ACHIEVEMENTS_API_KEY, else asked for (not echoed)
on a terminal. Never an argument: a command line is visible to every user of the machine and
kept in shell history."""

from __future__ import annotations

import getpass
import sys
from typing import Final

from services.cli.failures import MissingApiKey
from services.cli.settings import CliSettings

API_KEY_VARIABLE: Final = "ACHIEVEMENTS_API_KEY"


def read_api_key(settings: CliSettings) -> str:
    api_key = settings.api_key.get_secret_value().strip()
    if not api_key and sys.stdin.isatty():
        api_key = getpass.getpass("ATO API key: ").strip()
    if not api_key:
        raise MissingApiKey(f"no API key: set {API_KEY_VARIABLE} (or run it on a terminal)")
    return api_key
