"""What the root command hands every command: the connect timeout and the command line's own
settings, built once per run (`CliContext`)."""

from __future__ import annotations

from dataclasses import dataclass

import click

from services.cli.settings import CliSettings, build_settings


@dataclass
class CliContext:
    # `--connect-timeout` as given; None: ACHIEVEMENTS_CONNECT_TIMEOUT_S or its default.
    connect_timeout_option_s: float | None = None
    # The process's entry point configures logging (stderr only); a test calling `main` keeps
    # its own.
    configures_logging: bool = False
    _settings: CliSettings | None = None

    @property
    def settings(self) -> CliSettings:
        """Built on first use, inside the command: an invalid value is then reported the
        way the command reports failures (JSON with `--json`), and `--help` never needs it."""
        if self._settings is None:
            self._settings = build_settings(CliSettings)
        return self._settings

    @property
    def connect_timeout_s(self) -> float:
        if self.connect_timeout_option_s is not None:
            return self.connect_timeout_option_s
        return self.settings.connect_timeout_s


# Gives a click command the run's `CliContext` as its first argument (a fresh one when the
# command is invoked on its own, as a test may).
pass_cli = click.make_pass_decorator(CliContext, ensure=True)
