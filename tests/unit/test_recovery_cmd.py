"""`allocflow recovery init` and `allocflow run --recovery-dir`: one store, created once."""

from pathlib import Path

import pytest

from allocflow.flows.cli import main

pytestmark = pytest.mark.unit


def test_init_creates_the_partitions_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    assert main(["recovery", "init", str(store), "--partitions", "3"]) == 0
    assert sorted(p.name for p in store.glob("part-*.sqlite3")) == [
        "part-0.sqlite3",
        "part-1.sqlite3",
        "part-2.sqlite3",
    ]
    assert main(["recovery", "init", str(store)]) == 1
    assert "already holds a recovery store" in capsys.readouterr().err


def test_init_takes_the_directory_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALLOCFLOW_RECOVERY_DIR", str(tmp_path / "env-store"))
    assert main(["recovery", "init"]) == 0
    assert len(list((tmp_path / "env-store").glob("part-*.sqlite3"))) == 4


@pytest.mark.parametrize("partitions", ["0", "2000"])
def test_init_refuses_a_bad_partition_count(
    tmp_path: Path, partitions: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["recovery", "init", str(tmp_path / "s"), "--partitions", partitions]) == 2
    assert "--partitions must be within 1..1024" in capsys.readouterr().err


def test_init_without_a_directory_says_how_to_give_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALLOCFLOW_RECOVERY_DIR", raising=False)
    assert main(["recovery", "init"]) == 2
    assert "ALLOCFLOW_RECOVERY_DIR" in capsys.readouterr().err


def test_run_refuses_a_directory_that_is_not_a_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("orders", "reservations", "shipments", "carrier-events"):
        (tmp_path / f"{name}.jsonl").write_text("")
    args = ["run", "--input", str(tmp_path), "--out", str(tmp_path / "out")]
    assert main([*args, "--recovery-dir", str(tmp_path / "nothing")]) == 2
    error = capsys.readouterr().err
    assert "is not a recovery store" in error
    assert "allocflow recovery init" in error


@pytest.mark.parametrize(
    ("name", "value"), [("SNAPSHOT_INTERVAL_S", "0"), ("SNAPSHOT_INTERVAL_S", "1.5")]
)
def test_a_bad_snapshot_interval_names_its_field(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(f"ALLOCFLOW_{name}", value)
    assert main(["settings"]) == 2
    assert name.lower() in capsys.readouterr().err
