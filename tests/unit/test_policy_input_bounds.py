"""Hostile policy files are refused quickly, in bounded memory, with a short clear error."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from allocflow.connectors import policy_file
from allocflow.connectors.policy_file import (
    MAX_DEPTH,
    MAX_POLICY_BYTES,
    MAX_PROBLEMS,
    PolicyError,
    load_policy,
)
from allocflow.flows.cli import main

pytestmark = pytest.mark.unit

_DEEP = 20_000
_VALID_YAML = """
policy_version: anchors-1
nodes: [DC-A, DC-B, DC-C]
tiers: {gold: {priority: 1}}
channel_weights: {ecommerce: 1, edi: 1, sales: 1}
sourcing:
  home_nodes: {east: DC-A, west: DC-A}
  fallbacks:
    east: &usual [DC-B, DC-C]
    west: *usual
"""


def _billion_laughs() -> str:
    lines = ["policy_version: lol", 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 9):
        name, previous = chr(ord("a") + level), chr(ord("a") + level - 1)
        lines.append(f"{name}: &{name} [{','.join([f'*{previous}'] * 9)}]")
    return "\n".join(lines) + "\n"


def _problem(path: Path) -> str:
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert len(caught.value.problems) == 1
    return caught.value.problems[0]


@pytest.fixture(params=["libyaml", "pure Python"])
def yaml_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each YAML event parser the policy loader may run on."""
    if request.param == "pure Python":
        monkeypatch.setattr(policy_file, "_PolicyLoader", policy_file._PurePolicyLoader)
    else:
        assert yaml.__with_libyaml__
    return str(request.param)


# Peak memory is measured in a child process: tracemalloc started and stopped inside the
# test session, beside threads earlier tests left running, crashed CPython 3.11 once.
_PEAK_OF_LOADING = """
import sys, tracemalloc
from pathlib import Path
from allocflow.connectors import policy_file
if sys.argv[2] == "pure Python":
    policy_file._PolicyLoader = policy_file._PurePolicyLoader
tracemalloc.start()
try:
    policy_file.load_policy(Path(sys.argv[1]))
except policy_file.PolicyError:
    pass
print(tracemalloc.get_traced_memory()[1])
"""


def test_billion_laughs_is_refused_while_parsing_in_bounded_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], yaml_parser: str
) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(_billion_laughs())
    assert path.stat().st_size < 2000
    problem = _problem(path)
    child = [sys.executable, "-c", _PEAK_OF_LOADING, str(path), yaml_parser]
    peak = int(subprocess.run(child, capture_output=True, text=True, check=True).stdout)
    assert problem.startswith("too large: more than 50,000 values once aliases are expanded")
    assert peak < 20_000_000, f"{peak:,} bytes to refuse a {path.stat().st_size} B file"
    assert main(["policy", "check", str(path)]) == 2
    error = capsys.readouterr().err
    assert "too large" in error
    assert len(error) < 500


@pytest.mark.usefixtures("yaml_parser")
def test_anchors_and_aliases_within_the_bounds_still_load(tmp_path: Path) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text(_VALID_YAML)
    policy = load_policy(path)
    assert policy.sourcing.fallbacks == {"east": ["DC-B", "DC-C"], "west": ["DC-B", "DC-C"]}


@pytest.mark.usefixtures("yaml_parser")
def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("policy_version: x\nnodes: &n [DC-A, *n]\n")
    assert "an alias refers to a collection that contains it" in _problem(path)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("flow.yaml", "policy_version: x\nnodes: " + "[" * _DEEP + "]" * _DEEP + "\n"),
        ("block.yaml", "nodes:\n" + "- " * _DEEP + "DC-A\n"),
        ("mapping.yaml", "nodes: " + "{a: " * _DEEP + "1" + "}" * _DEEP + "\n"),
        ("array.toml", 'policy_version = "x"\nnodes = ' + "[" * _DEEP + "]" * _DEEP + "\n"),
        ("inline.toml", "nodes = " + "{a = " * _DEEP + "1" + "}" * _DEEP + "\n"),
        ("dotted.toml", "a" + ".a" * _DEEP + " = 1\n"),
        ("header.toml", "[a" + ".a" * _DEEP + "]\nb = 1\n"),
    ],
)
@pytest.mark.usefixtures("yaml_parser")
def test_deep_nesting_is_refused_naming_the_limit(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert path.stat().st_size <= MAX_POLICY_BYTES
    assert _problem(path).startswith(f"too large: nested deeper than {MAX_DEPTH} levels")


def test_a_file_past_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    path.write_text(f'policy_version = "x"\ndescription = "{"x" * MAX_POLICY_BYTES}"\n')
    assert _problem(path).startswith("too large: more than 1,048,576 bytes")


def test_an_endless_file_is_refused_after_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "endless.toml"
    path.symlink_to("/dev/zero")
    assert _problem(path).startswith("too large: more than 1,048,576 bytes")


def test_a_huge_value_is_cut_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    path.write_text(f"policy_version: {'v' * 500_000}\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert len(str(caught.value)) < 600
    assert "policy_version: String should have at most 128 characters" in str(caught.value)


def test_a_huge_duplicate_key_is_cut_in_the_error(tmp_path: Path) -> None:
    key = "k" * 500_000
    path = tmp_path / "dup.yaml"
    path.write_text(f"? {key}\n: 1\n? {key}\n: 2\n")
    problem = _problem(path)
    assert problem.startswith("not valid YAML: duplicate key 'kkk")
    assert len(problem) < 600


def test_at_most_a_hundred_problems_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text("".join(f"unknown_{index}: 1\n" for index in range(MAX_PROBLEMS + 400)))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert len(caught.value.problems) == MAX_PROBLEMS
    assert str(caught.value).endswith("more problems")
