"""Processes under a supervisor that keeps `<name>.pid` in one folder and `<name>.log` in
another, as deploy/local's stack and deploy/cluster's do: what the fault tests need to kill one
of them, see that it died, and wait for the pipeline with the logs at hand when it does not come.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import ClassVar


class SupervisedProcesses(ABC):
    """The processes of one stack: pid files in `run_dir`, logs in `log_dir`."""

    # How many lines of a process's log a failure shows by default.
    log_tail_lines: ClassVar[int] = 30

    @property
    @abstractmethod
    def run_dir(self) -> Path: ...

    @property
    @abstractmethod
    def log_dir(self) -> Path: ...

    @abstractmethod
    def logs(self) -> str:
        """The tails of the logs a failure shows."""

    def pid(self, name: str) -> int | None:
        try:
            return int((self.run_dir / f"{name}.pid").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def sigkill(self, name: str) -> int:
        pid = self.pid(name)
        assert pid is not None, name
        os.kill(pid, signal.SIGKILL)
        return pid

    def log_tail(self, name: str, lines: int | None = None) -> str:
        path = self.log_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        kept = self.log_tail_lines if lines is None else lines
        return f"--- {name}\n" + "\n".join(text.splitlines()[-kept:])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of ours is not running any more.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def wait_until(
    check: Callable[[], bool], what: str, timeout_s: float, processes: SupervisedProcesses
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{processes.logs()}")
        time.sleep(0.2)


async def eventually(
    check: Callable[[], Awaitable[bool]],
    what: str,
    processes: SupervisedProcesses,
    timeout_s: float,
    *,
    poll_s: float = 0.2,
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{processes.logs()}")
        await asyncio.sleep(poll_s)
