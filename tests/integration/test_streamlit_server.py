"""The Streamlit server runs an app in a real headless Chromium and leaves no process behind."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest
from playwright.sync_api import Page

from allocflow.dashboards.server import DashboardStartError, StreamlitServer

pytestmark = pytest.mark.integration

_TINY_APP = Path(__file__).parent / "_tiny_app.py"


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (dead, not yet reaped) counts as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in {"Z", "X"}


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid``."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, IndexError, ValueError):
            continue
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {child for child in found if _alive(child)}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.duckdb"
    with duckdb.connect(str(path)) as connection:
        connection.execute(
            "CREATE TABLE t AS SELECT range AS n FROM range(5000) WHERE range % 3 = 1"
        )
    return path


def _sql_row_count(db: Path) -> int:
    with duckdb.connect(str(db), read_only=True) as connection:
        row = connection.execute("SELECT count(*) FROM t").fetchone()
    assert row is not None
    return int(row[0])


def test_app_renders_the_sql_count_in_chromium(
    db: Path, tmp_path: Path, browser_page: Page
) -> None:
    expected = _sql_row_count(db)
    log = tmp_path / "streamlit.log"

    with StreamlitServer(_TINY_APP, app_args=["--db", str(db)], log_path=log) as server:
        pid = server.pid
        assert pid is not None
        browser_page.goto(server.url)
        value = browser_page.wait_for_selector("[data-testid=stMetricValue]", timeout=15_000)
        assert value is not None
        shown = value.inner_text()
        browser_page.screenshot(path=tmp_path / "tiny_app.png", full_page=True)
        descendants = _children(pid)

    assert shown == str(expected)
    assert (tmp_path / "tiny_app.png").stat().st_size > 0
    assert "Uvicorn server started" in log.read_text()
    assert not server.running
    assert not _alive(pid)
    assert not {child for child in descendants if _alive(child)}
    assert not _children(pid)


def test_health_timeout_names_the_url_and_stops_the_child(db: Path, tmp_path: Path) -> None:
    before = _children(os.getpid())
    server = StreamlitServer(
        _TINY_APP, app_args=["--db", str(db)], log_path=tmp_path / "s.log", startup_timeout_s=0.05
    )

    with pytest.raises(DashboardStartError) as error:
        server.start()

    assert re.search(
        r"at http://127\.0\.0\.1:(\d+) did not answer http://127\.0\.0\.1:\1/_stcore/health "
        r"with 'ok' within 0\.05 s; its log ends with:\n",
        str(error.value),
    )
    assert server.pid is None
    assert _children(os.getpid()) <= before


def test_taken_port_is_refused_before_spawning(db: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = StreamlitServer(_TINY_APP, app_args=["--db", str(db)], port=port)

        with pytest.raises(DashboardStartError, match=f"127.0.0.1:{port}.*another dashboard"):
            server.start()

    assert server.pid is None


_PARENT = """
import sys, time
from pathlib import Path
from allocflow.dashboards.server import StreamlitServer
server = StreamlitServer(Path(sys.argv[1]), app_args=["--db", sys.argv[2]])
server.start()
print(server.pid, flush=True)
time.sleep(60)
"""


def test_server_dies_with_a_killed_parent(db: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, str(_TINY_APP), str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert _alive(pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)
    finally:
        parent.kill()
        parent.wait()


_DASHBOARD = """
import functools, sys
from pathlib import Path
from allocflow.dashboards.server import StreamlitServer
from allocflow.flows.cli import main
from allocflow.flows.commands import dashboard_cmd
dashboard_cmd.StreamlitServer = functools.partial(StreamlitServer, Path(sys.argv[1]))
sys.exit(main(["dashboard", "--db", sys.argv[2], "--port", "0"]))
"""


def test_dashboard_command_serves_until_ctrl_c(db: Path) -> None:
    command = subprocess.Popen(
        [sys.executable, "-c", _DASHBOARD, str(_TINY_APP), str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert command.stdout is not None
        url = command.stdout.readline().removeprefix("Dashboard: ").strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        assert command.stdout.readline() == "Ctrl-C stops it.\n"
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:  # noqa: S310
            assert response.read() == b"ok"
        servers = _children(command.pid)
        assert servers

        command.send_signal(signal.SIGINT)
        _, err = command.communicate(timeout=15)
    finally:
        command.kill()
        command.wait()

    assert command.returncode == 0, err
    assert not {pid for pid in servers if _alive(pid)}
