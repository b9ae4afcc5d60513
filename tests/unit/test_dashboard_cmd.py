"""`allocflow dashboard` checks its database before it starts the Streamlit server."""

from pathlib import Path
from types import TracebackType

import pytest

from allocflow.dashboards.server import DashboardStartError
from allocflow.flows.cli import main
from allocflow.flows.commands import dashboard_cmd

pytestmark = pytest.mark.unit


class _RefusingServer:
    """Stands in for StreamlitServer: records its arguments, then fails to start."""

    started_with: list[tuple[list[str], int, str]] = []  # noqa: RUF012 - reset by the fixture

    def __init__(self, *, app_args: list[str], port: int, address: str) -> None:
        type(self).started_with.append((app_args, port, address))

    def __enter__(self) -> "_RefusingServer":
        raise DashboardStartError("refused by the test")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        raise AssertionError("never entered")


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> type[_RefusingServer]:
    monkeypatch.setattr(_RefusingServer, "started_with", [])
    monkeypatch.setattr(dashboard_cmd, "StreamlitServer", _RefusingServer)
    return _RefusingServer


def test_missing_db_exits_2_naming_both_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fake_server: type[_RefusingServer]
) -> None:
    db = tmp_path / "missing.duckdb"

    code = main(["dashboard", "--db", str(db)])

    error = capsys.readouterr().err
    assert code == 2
    assert f"neither {db} nor its snapshot {db}.snapshot exists" in error
    assert fake_server.started_with == []


def test_db_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["dashboard"])

    assert exit_info.value.code == 2
    assert "--db" in capsys.readouterr().err


@pytest.mark.parametrize("existing", ["demo.duckdb", "demo.duckdb.snapshot"])
def test_db_or_its_snapshot_is_enough(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fake_server: type[_RefusingServer],
    existing: str,
) -> None:
    (tmp_path / existing).touch()
    monkeypatch.chdir(tmp_path)

    code = main(["dashboard", "--db", "demo.duckdb", "--port", "0", "--address", "127.0.0.2"])

    assert code == 1
    assert "allocflow dashboard: refused by the test" in capsys.readouterr().err
    assert fake_server.started_with == [(["--db", str(tmp_path / "demo.duckdb")], 0, "127.0.0.2")]
