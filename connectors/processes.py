"""Child processes that never outlive allocflow: the lander, the flow, servers.

Every child allocflow starts asks Linux to SIGKILL it when its parent dies
(``PR_SET_PDEATHSIG``), so a ``kill -9`` of allocflow leaves no orphan behind, and
is stopped politely first (SIGINT, then SIGTERM, then SIGKILL).
"""

import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

_LOG = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def die_with_parent_hook() -> Callable[[], None] | None:
    """Return a pre-exec hook asking Linux to SIGKILL the child when the parent dies.

    ``prctl`` is looked up here, in the parent, so the hook itself only calls it.
    None off Linux.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os._exit(1)

    return hook


def stop_politely(process: "subprocess.Popen[bytes]", grace_s: float, name: str) -> None:
    """Stop ``process``: SIGINT, then SIGTERM, then SIGKILL, ``grace_s`` apart; reap it."""
    if process.poll() is not None:
        return
    for stop in (signal.SIGINT, signal.SIGTERM):
        process.send_signal(stop)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _LOG.warning("%s (pid %d) ignored %s", name, process.pid, stop.name)
        else:
            return
    _LOG.warning("killing %s (pid %d)", name, process.pid)
    process.kill()
    process.wait()


class ChildProcess:
    """A command run as a child, logging to a file, stopped politely on exit.

    Example:
        ::

            with ChildProcess("lander", ["allocflow", "land", ...], Path("land.log")) as lander:
                ...
                lander.stop()  # or leave the block
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        grace_s: float = 20.0,
    ) -> None:
        """Start the command now; its output goes to ``log_path``."""
        self.name = name
        self.log_path = log_path
        self._grace_s = grace_s
        self._log: IO[bytes] = log_path.open("wb")
        self.process = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
            preexec_fn=die_with_parent_hook(),  # noqa: PLW1509
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def poll(self) -> int | None:
        """The exit code, or None while it runs."""
        return self.process.poll()

    def wait(self, timeout_s: float | None) -> int | None:
        """Wait for it to exit on its own; the exit code, or None on timeout."""
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> int:
        """Stop it (if it still runs), close its log; its exit code."""
        stop_politely(self.process, self._grace_s, self.name)
        self._log.close()
        return self.process.returncode
