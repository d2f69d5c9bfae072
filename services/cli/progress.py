"""`achievements upload FILE`'s progress on a terminal: a bar of the bytes sent, then a count
of the rows validated (on stderr). Anywhere else (a pipe, `--json`) nothing, so the output
stays one JSON object or plain lines."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)


class UploadProgress:
    """On a terminal: a bar for the bytes sent, then a count of the rows validated. Anywhere
    else (a pipe, `--json`): nothing, so the output stays one JSON object or plain lines."""

    def __init__(self, console: Console | None, wait: bool) -> None:
        self._console = console
        self._wait = wait
        self._bytes_bar: Progress | None = None
        self._rows_bar: Progress | None = None
        self._bytes: TaskID | None = None
        self._rows: TaskID | None = None

    @classmethod
    def for_output(cls, *, enabled: bool, wait: bool) -> UploadProgress:
        console = Console(stderr=True) if enabled and sys.stderr.isatty() else None
        return cls(console, wait)

    def __enter__(self) -> UploadProgress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for bar in (self._bytes_bar, self._rows_bar):
            if bar is not None:
                bar.stop()

    def start_bytes(self, path: Path) -> None:
        if self._console is None:
            return
        self._bytes_bar = Progress(
            TextColumn("sending   "),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=self._console,
        )
        self._bytes_bar.start()
        with contextlib.suppress(OSError):
            self._bytes = self._bytes_bar.add_task("sending", total=path.stat().st_size)

    def bytes_sent(self, count: int) -> None:
        if self._bytes_bar is not None and self._bytes is not None:
            self._bytes_bar.advance(self._bytes, count)

    def upload_seen(self, upload: dict[str, Any]) -> None:
        """Each state of the upload read while waiting: rows validated so far."""
        if self._console is None or not self._wait:
            return
        if self._rows_bar is None:
            if self._bytes_bar is not None:
                self._bytes_bar.stop()
            self._rows_bar = Progress(
                TextColumn("{task.description:<10}"),
                BarColumn(),
                TextColumn("{task.completed:,.0f} rows"),
                TimeElapsedColumn(),
                console=self._console,
            )
            self._rows_bar.start()
            self._rows = self._rows_bar.add_task("validating", total=None)
        if self._rows is None:  # added with the bar just above
            raise RuntimeError("the rows bar has no task")
        status = str(upload.get("status", ""))
        processed = int(upload.get("rows_processed") or 0)
        final = status not in ("received", "validating")
        self._rows_bar.update(
            self._rows,
            completed=processed,
            total=max(processed, 1) if final else None,
            description=status,
        )
