"""Run a Streamlit app as a child process, ready when it answers its health check.

Example:
    ::

        with StreamlitServer(app_args=["--db", "demo.duckdb"]) as server:
            print(server.url)
"""

import atexit
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from allocflow.connectors.broker import free_port
from allocflow.connectors.processes import die_with_parent_hook, stop_politely

_LOG = logging.getLogger(__name__)

APP_PATH = Path(__file__).parent / "app.py"
"""The allocflow dashboard app, run by default."""

_HEALTH_PATH = "/_stcore/health"
_LOG_TAIL_LINES = 20
_PROBE_INTERVAL_S = 0.1
_PROBE_TIMEOUT_S = 1.0


class DashboardStartError(RuntimeError):
    """The Streamlit server could not be started, or did not answer in time."""


class StreamlitServer:
    """A ``streamlit run`` child process, stopped without leftovers.

    The server is headless, sends no usage statistics and watches no files. It is
    stopped by :meth:`stop`, on leaving the ``with`` block (also on an exception), and
    at interpreter exit. If the Python parent dies without cleaning up (``kill -9``),
    Linux kills the server too (``PR_SET_PDEATHSIG``); that signal follows the
    *thread* that started it, so start it from a long-lived thread, normally the main
    one.

    Args:
        app: The Streamlit script. Default: the allocflow dashboard.
        app_args: Arguments for the script, passed after ``--`` (it sees them in
            ``sys.argv[1:]``).
        port: TCP port on ``address``; 0 picks a free one.
        address: IPv4 address or host name to listen on.
        log_path: File receiving the server's output (appended). Default: a temporary
            file removed on :meth:`stop`.
        startup_timeout_s: Seconds to wait for the health check to answer ``ok``.
        stop_timeout_s: Seconds to wait after each stop signal before the next one.
    """

    def __init__(
        self,
        app: Path = APP_PATH,
        *,
        app_args: Sequence[str] = (),
        port: int = 0,
        address: str = "127.0.0.1",
        log_path: Path | None = None,
        startup_timeout_s: float = 30.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self._app = app
        self._app_args = tuple(app_args)
        self._requested_port = port
        self._address = address
        self._requested_log_path = log_path
        self._startup_timeout_s = startup_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._log_path: Path | None = None
        self._temporary_log = False

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL of the running server, e.g. ``http://127.0.0.1:8501``.

        Raises:
            RuntimeError: The server is not running.
        """
        if self._process is None or self._port is None:
            raise RuntimeError("the Streamlit server is not running")
        return self._base_url()

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the server, None when not started."""
        return None if self._process is None else self._process.pid

    @property
    def log_path(self) -> Path | None:
        """The server's log file, None when not started."""
        return self._log_path

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """Return the last ``lines`` lines of the server's log."""
        if self._log_path is None or not self._log_path.exists():
            return "(no log)"
        last = self._log_path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(last) if last else "(log is empty)"

    def start(self) -> None:
        """Start the server and wait until its health check answers ``ok``.

        Raises:
            DashboardStartError: The app file is missing, the process exited early or
                did not answer within the startup timeout. The message holds the tail
                of the server's log.
            RuntimeError: The server is already running.
        """
        if self._process is not None:
            raise RuntimeError(f"the Streamlit server is already running at {self._base_url()}")
        if not self._app.is_file():
            raise DashboardStartError(f"Streamlit app {self._app} does not exist")
        started = time.monotonic()
        try:
            self._launch()
            self._wait_until_healthy(started + self._startup_timeout_s)
        except BaseException:
            self.stop()
            raise
        _LOG.info(
            "Streamlit server for %s started at %s, pid %s, in %.2f s; log %s",
            self._app.name,
            self._base_url(),
            self.pid,
            time.monotonic() - started,
            self._log_path,
        )

    def stop(self) -> None:
        """Stop the server: SIGINT, then SIGTERM, then SIGKILL; reap it. Idempotent."""
        atexit.unregister(self.stop)
        if self._process is not None:
            self._stop_process(self._process)
        self._process = None
        self._port = None
        if self._temporary_log and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None
            self._temporary_log = False

    def _base_url(self) -> str:
        return f"http://{self._address}:{self._port}"

    def _launch(self) -> None:
        self._port = self._requested_port or free_port(self._address)
        _check_port_free(self._address, self._port)
        log_path = self._prepare_log_path()
        self._process = _spawn(self._command(), log_path)
        atexit.register(self.stop)

    def _command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "--server.headless",
            "true",
            "--server.port",
            str(self._port),
            "--server.address",
            self._address,
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
            str(self._app),
            "--",
            *self._app_args,
        ]

    def _prepare_log_path(self) -> Path:
        if self._requested_log_path is None:
            handle, name = tempfile.mkstemp(prefix="allocflow-dashboard-", suffix=".log")
            os.close(handle)
            self._log_path = Path(name)
            self._temporary_log = True
        else:
            self._log_path = self._requested_log_path
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
        return self._log_path

    def _wait_until_healthy(self, deadline: float) -> None:
        health_url = self._base_url() + _HEALTH_PATH
        while True:
            self._raise_if_exited()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._start_error(
                    f"did not answer {health_url} with 'ok' within {self._startup_timeout_s} s"
                )
            if _answers_ok(health_url, min(remaining, _PROBE_TIMEOUT_S)):
                return
            time.sleep(_PROBE_INTERVAL_S)

    def _raise_if_exited(self) -> None:
        code = None if self._process is None else self._process.poll()
        if code is not None:
            raise self._start_error(f"exited with code {code} before it was ready")

    def _start_error(self, what: str) -> DashboardStartError:
        return DashboardStartError(
            f"Streamlit server for {self._app} at {self._base_url()} {what}; "
            f"its log ends with:\n{self.log_tail()}"
        )

    def _stop_process(self, process: "subprocess.Popen[bytes]") -> None:
        exit_code = process.poll()
        if exit_code is not None:
            _LOG.warning(
                "Streamlit server (pid %d) had already exited with code %d", process.pid, exit_code
            )
            return
        stop_politely(process, self._stop_timeout_s, "Streamlit server")
        _LOG.info("Streamlit server at %s stopped (pid %d)", self._base_url(), process.pid)


def _check_port_free(address: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as error:
            raise DashboardStartError(
                f"cannot start the Streamlit server on {address}:{port}: {error.strerror} "
                "(another dashboard running? pick another port, or 0 for a free one)"
            ) from error


def _spawn(command: list[str], log_path: Path) -> "subprocess.Popen[bytes]":
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
            preexec_fn=die_with_parent_hook(),  # noqa: PLW1509
        )


def _answers_ok(url: str, timeout_s: float) -> bool:
    """Return whether ``url`` answers HTTP 200 with the body ``ok`` in time."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310
            body: bytes = response.read()
    except OSError:
        return False
    return body.strip() == b"ok"
