"""`allocflow run` refuses bad options and policies before reading any event."""

from pathlib import Path

import pytest

from allocflow.flows.allocation import ALLOCATION_INPUTS
from allocflow.flows.cli import main

pytestmark = pytest.mark.unit


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    for topic in ALLOCATION_INPUTS:
        (tmp_path / f"{topic.value}.jsonl").write_text("")
    return tmp_path


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["run", *args])
    return code, capsys.readouterr().err


def test_bad_policy_names_the_field(
    inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('policy_version = "x"\nnodes = ["DC-A"]\n')
    code, error = _run(
        ["--input", str(inputs), "--out", str(tmp_path / "o"), "--policy", str(policy)], capsys
    )
    assert code == 2
    assert "invalid policy" in error
    assert "tiers" in error
    assert not (tmp_path / "o").exists()


def test_missing_input_files_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, error = _run(["--input", str(tmp_path), "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert f"{tmp_path}/orders.jsonl" in error


def test_input_needs_out(inputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, error = _run(["--input", str(inputs)], capsys)
    assert code == 2
    assert "needs --out" in error


@pytest.mark.parametrize(("flag", "value"), [("--workers", "0"), ("--shards", "0")])
def test_counts_must_be_positive(
    inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    code, error = _run(["--input", str(inputs), "--out", str(tmp_path / "o"), flag, value], capsys)
    assert code == 2
    assert flag in error


def test_no_source_at_all_says_how_to_give_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALLOCFLOW_BOOTSTRAP_SERVERS", raising=False)
    code, error = _run([], capsys)
    assert code == 2
    assert "ALLOCFLOW_BOOTSTRAP_SERVERS" in error


def test_file_run_prints_where_every_input_went(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = tmp_path / "stream"
    simulate = ["simulate", "--orders", "20", "--faults", "none", "--seed", "3"]
    assert main([*simulate, "--out", str(stream), "--no-progress"]) == 0
    orders = stream / "orders.jsonl"
    lines = orders.read_bytes().splitlines(keepends=True)
    orders.write_bytes(b"".join([*lines, lines[0], b"{not json\n"]))
    total = sum(len((stream / f"{t}.jsonl").read_bytes().splitlines()) for t in _FEEDS)
    capsys.readouterr()
    assert main(["run", "--input", str(stream), "--out", str(tmp_path / "out")]) == 0
    report = capsys.readouterr().out.splitlines()
    assert report[0] == f"{total} inputs read: {total - 2} valid, 1 dead-lettered, 1 deduplicated"
    assert report[1] == "dead-lettered by reason: MALFORMED_JSON 1"
    assert report[2].startswith("alerts by check: duplicate 1")


_FEEDS = tuple(topic.value for topic in ALLOCATION_INPUTS)
