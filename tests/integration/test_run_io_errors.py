"""`allocflow run` meets unusable paths and failing writes with one clear line, not a traceback.

Real files and directories throughout. Tests run as root, whom permissions do not
stop, so an unreadable file and a read-only directory are tried by a child process
running as an unprivileged user (nobody); a full disk is a symlink to /dev/full.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from allocflow.flows.allocation import ALLOCATION_INPUTS
from allocflow.flows.cli import main
from allocflow.flows.commands.recovery_cmd import existing_partitions
from allocflow.models.topics import OutputTopic

pytestmark = pytest.mark.integration

NOBODY = 65534
_CLI = [sys.executable, "-m", "allocflow.flows.cli", "--log-level", "ERROR"]


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A directory any user can enter (pytest's tmp_path is private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="allocflow-io-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


def _empty_inputs(directory: Path) -> Path:
    directory.mkdir(mode=0o755)
    for topic in ALLOCATION_INPUTS:
        (directory / f"{topic.value}.jsonl").write_text("")
        (directory / f"{topic.value}.jsonl").chmod(0o644)
    return directory


def _unprivileged(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as a user whom file permissions stop (util-linux ``setpriv`` as root)."""
    if os.geteuid() == 0:
        drop = [f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        command = ["setpriv", *drop, *command]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, check=False, cwd="/"
    )


def _only_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert "panicked" not in stderr
    return lines[0]


def test_an_unreadable_input_file_is_named_before_the_run(world_readable_dir: Path) -> None:
    inputs = _empty_inputs(world_readable_dir / "stream")
    (inputs / "shipments.jsonl").chmod(0o000)
    out = world_readable_dir / "out"
    result = _unprivileged([*_CLI, "run", "--input", str(inputs), "--out", str(out)])
    assert result.returncode == 2
    line = _only_line(result.stderr)
    assert line.startswith(f"allocflow run: --input: cannot read {inputs / 'shipments.jsonl'}: ")
    assert "Permission denied" in line
    assert "make it readable" in line
    assert not out.exists()


def test_a_read_only_out_directory_is_refused_before_the_run(world_readable_dir: Path) -> None:
    inputs = _empty_inputs(world_readable_dir / "stream")
    read_only = world_readable_dir / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    for out in (read_only, read_only / "out"):
        result = _unprivileged([*_CLI, "run", "--input", str(inputs), "--out", str(out)])
        assert result.returncode == 2
        assert _only_line(result.stderr) == (
            f"allocflow run: --out {out}: {read_only} is not writable by this user; "
            "choose a writable directory or fix its permissions"
        )
    assert list(read_only.iterdir()) == []


def test_a_read_only_db_directory_is_refused_before_the_run(world_readable_dir: Path) -> None:
    inputs = _empty_inputs(world_readable_dir / "stream")
    read_only = world_readable_dir / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    out = world_readable_dir / "out"
    out.mkdir()
    out.chmod(0o777)
    db = read_only / "allocflow.duckdb"
    command = [*_CLI, "run", "--input", str(inputs), "--out", str(out), "--db", str(db)]
    result = _unprivileged(command)
    assert result.returncode == 2
    assert _only_line(result.stderr).startswith(f"allocflow run: --db {db}: {read_only} is not")
    assert list(out.iterdir()) == []


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    return _empty_inputs(tmp_path / "stream")


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        ("a-file", "--out {tmp}/a-file: is a file, not a directory; give a directory"),
        (
            "a-file/out",
            "--out {tmp}/a-file/out: cannot be created: {tmp}/a-file is a file, not a "
            "directory; choose another directory",
        ),
    ],
)
def test_out_on_or_under_a_file_is_refused(
    inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], out: str, expected: str
) -> None:
    (tmp_path / "a-file").write_text("keep me")
    code = main(["run", "--input", str(inputs), "--out", str(tmp_path / out)])
    assert code == 2
    assert capsys.readouterr().err == f"allocflow run: {expected.format(tmp=tmp_path)}\n"
    assert (tmp_path / "a-file").read_text() == "keep me"


def test_an_output_file_replaced_by_a_directory_is_refused(
    inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    (out / f"{OutputTopic.DQ_ALERTS.value}.jsonl").mkdir(parents=True)
    assert main(["run", "--input", str(inputs), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"allocflow run: --out: {out}/dq-alerts.jsonl is a directory; remove it or choose another\n"
    )


@pytest.mark.parametrize("where", ["directory", "under a file"])
def test_db_on_a_directory_or_under_a_file_is_refused(
    inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    (tmp_path / "a-file").write_text("")
    db = tmp_path if where == "directory" else tmp_path / "a-file" / "allocflow.duckdb"
    out = tmp_path / "out"
    assert main(["run", "--input", str(inputs), "--out", str(out), "--db", str(db)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"allocflow run: --db {db}: ")
    assert error.count("\n") == 1
    assert not out.exists()


def test_a_recovery_store_partition_replaced_by_a_directory_is_refused(
    inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "recovery"
    assert main(["recovery", "init", str(store)]) == 0
    partition = existing_partitions(store)[0]
    partition.unlink()
    partition.mkdir()
    capsys.readouterr()
    code = main(
        ["run", "--input", str(inputs), "--out", str(tmp_path / "o"), "--recovery-dir", str(store)]
    )
    assert code == 2
    assert capsys.readouterr().err == (
        f"allocflow run: --recovery-dir: {partition} is a directory; remove it or choose another\n"
    )


def test_a_full_disk_mid_run_stops_with_one_line_and_lands_nothing(tmp_path: Path) -> None:
    stream = tmp_path / "stream"
    simulate = ["simulate", "--orders", "20", "--seed", "3", "--faults", "none"]
    assert main([*simulate, "--out", str(stream), "--no-progress"]) == 0
    out = tmp_path / "out"
    out.mkdir()
    full = out / f"{OutputTopic.ALLOCATION_DECISIONS.value}.jsonl"
    full.symlink_to("/dev/full")
    db = tmp_path / "allocflow.duckdb"
    command = [*_CLI, "run", "--input", str(stream), "--out", str(out), "--db", str(db)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1
    assert _only_line(result.stderr) == (
        f"allocflow run: stopped: cannot write {full}: No space left on device (errno 28); "
        f"free space on (or fix write access to) {out}, then run again (with --recovery-dir "
        f"it resumes from the last snapshot, else it starts over); nothing was landed into {db}"
    )
    assert not db.exists()


def test_a_landing_failure_after_the_flow_ends_with_one_line(tmp_path: Path) -> None:
    stream = tmp_path / "stream"
    simulate = ["simulate", "--orders", "20", "--seed", "3", "--faults", "none"]
    assert main([*simulate, "--out", str(stream), "--no-progress"]) == 0
    db = tmp_path / "allocflow.duckdb"
    blocked = tmp_path / "allocflow.duckdb.snapshot"
    blocked.mkdir()  # the dashboard snapshot cannot be published where a directory stands
    out = tmp_path / "out"
    command = [*_CLI, "run", "--input", str(stream), "--out", str(out), "--db", str(db)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1
    line = _only_line(result.stderr)
    assert line.startswith(f"allocflow run: could not publish the dashboard snapshot {blocked} ")
    assert "run the same command again" in line
    assert not list(tmp_path.glob("*.building-*"))
