"""The venv runs exactly the tested set of versions that requirements.lock pins."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.unit

LOCK = Path(__file__).resolve().parents[2] / "requirements.lock"


def _pins(text: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, version = line.partition("==")
        assert version, f"requirements.lock: {line!r} is not a 'name==version' pin"
        pins[canonicalize_name(name)] = version
    return pins


def _needed(root: str, extras: tuple[str, ...]) -> set[str]:
    """Every distribution ``root`` (with ``extras``) needs here, transitively."""
    seen: set[str] = set()
    todo: list[tuple[str, tuple[str, ...]]] = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            environments = [{"extra": extra} for extra in ("", *wanted)]
            marker = requirement.marker
            if marker is not None and not any(marker.evaluate(env) for env in environments):
                continue
            key = canonicalize_name(requirement.name)
            if key not in seen:
                seen.add(key)
                todo.append((requirement.name, tuple(requirement.extras)))
    return seen


def test_pins_parse_and_name_each_distribution_once() -> None:
    lines = [ln for ln in LOCK.read_text().splitlines() if ln and not ln.startswith("#")]
    assert len(_pins(LOCK.read_text())) == len(lines)
    assert {"pip", "setuptools"} <= _pins(LOCK.read_text()).keys()


def test_every_installed_dependency_is_the_locked_version() -> None:
    pins = _pins(LOCK.read_text())
    needed = _needed("allocflow", ("dev",))

    assert {"bytewax", "duckdb", "polars", "streamlit", "pytest"} <= needed
    missing = sorted(needed - pins.keys())
    assert not missing, f"not pinned in requirements.lock (run 'make lock'): {missing}"
    drifted = {
        name: (metadata.version(name), pins[name])
        for name in sorted(needed)
        if metadata.version(name) != pins[name]
    }
    assert not drifted, f"installed version differs from requirements.lock: {drifted}"
