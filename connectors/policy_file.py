"""Read an allocation policy from a TOML or YAML file, or the packaged default.

Every way a policy file can be wrong ends in one ``PolicyError`` that names the file
and lists each problem as ``field.path: reason (got value)``, so a bad policy stops
the pipeline before it reads any event.

Example:
    >>> default_policy().policy_version
    'default-2026.1'
"""

import re
import tomllib
from collections.abc import Hashable
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from allocflow.models.policy import Policy

_PARSERS = {".toml": "TOML", ".yaml": "YAML", ".yml": "YAML"}
_RELATIVE_PATH = re.compile(r"^(?P<path>[^\s:]+): (?P<reason>.*)$")
_CONSEQUENTIAL = "default_factory_not_called"
"""Reported for a default computed from fields that failed; those failures are reported."""


class PolicyError(ValueError):
    """A policy file that cannot be read or is not a valid policy.

    Attributes:
        source: The file (or resource) the policy came from.
        problems: One line per problem, ``field.path: reason (got value)`` where a
            field is at fault.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listed = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{source}: invalid policy\n{listed}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        """Build a mapping, failing on a duplicate key (PyYAML keeps the last one silently)."""
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_policy(path: Path) -> Policy:
    """Read and validate the policy in ``path`` (``.toml``, ``.yaml`` or ``.yml``).

    Args:
        path: The policy file.

    Returns:
        The validated policy.

    Raises:
        PolicyError: The file has another extension, cannot be read, is not valid TOML
            or YAML, or is not a valid policy.
    """
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in _PARSERS:
        raise PolicyError(
            source, [f"unsupported file type {path.suffix!r}; use .toml, .yaml or .yml"]
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PolicyError(source, [f"cannot read the file: {error}"]) from error
    return parse_policy(text, _PARSERS[suffix], source)


def default_policy() -> Policy:
    """Return the default policy shipped with allocflow (``flows/policies/default.toml``).

    Raises:
        PolicyError: The packaged file is missing or invalid (a broken installation).
    """
    resource = files("allocflow.flows").joinpath("policies", "default.toml")
    return parse_policy(resource.read_text(encoding="utf-8"), "TOML", str(resource))


def parse_policy(text: str, syntax: str, source: str) -> Policy:
    """Parse policy text and validate it.

    Args:
        text: The file content.
        syntax: ``TOML`` or ``YAML``.
        source: Name of the file, used in error messages.

    Returns:
        The validated policy.

    Raises:
        PolicyError: The text is not valid ``syntax`` or not a valid policy.
    """
    data = _parse_toml(text, source) if syntax == "TOML" else _parse_yaml(text, source)
    try:
        return Policy.model_validate(data)
    except ValidationError as error:
        raise PolicyError(source, validation_problems(error)) from error


def _parse_toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(source, [f"not valid TOML: {error}"]) from error


def _parse_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as error:
        raise PolicyError(source, [f"not valid YAML: {_yaml_reason(error)}"]) from error
    except yaml.YAMLError as error:
        raise PolicyError(source, [f"not valid YAML: {error}"]) from error
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise PolicyError(source, [f"the document must be a mapping of fields (got {kind})"])
    return data


def _yaml_reason(error: yaml.MarkedYAMLError) -> str:
    reason = error.problem or error.context or "syntax error"
    mark = error.problem_mark or error.context_mark
    if mark is None:
        return reason
    return f"{reason} (at line {mark.line + 1}, column {mark.column + 1})"


def validation_problems(error: ValidationError) -> list[str]:
    """Return one ``field.path: reason (got value)`` line per problem in ``error``.

    Checks of a whole model or collection report ``relative.path: reason`` lines (see
    ``allocflow.models.policy``) that name the value; their paths are joined to the
    error's location.
    Defaults that could not be computed because another field failed are left out.

    Args:
        error: A validation error of ``Policy``.

    Returns:
        The problems, in the order pydantic reports them.
    """
    problems: list[str] = []
    for detail in error.errors(include_url=False):
        path = [str(part) for part in detail["loc"]]
        if detail["type"] == _CONSEQUENTIAL:
            continue
        if detail["type"] == "value_error" and isinstance(detail["input"], dict | list):
            message = detail["msg"].removeprefix("Value error, ")
            problems += [_relative_problem(path, line) for line in message.splitlines()]
        else:
            problems.append(_field_problem(path, detail))
    return problems


def _relative_problem(path: list[str], line: str) -> str:
    match = _RELATIVE_PATH.match(line)
    if match is None:
        return f"{_dotted(path)}: {line}"
    return f"{_dotted([*path, match['path']])}: {match['reason']}"


def _field_problem(path: list[str], detail: ErrorDetails) -> str:
    reason = detail["msg"].removeprefix("Value error, ")
    if detail["type"] == "extra_forbidden":
        reason = "unknown field (misspelt?)"
    if detail["type"] == "missing":
        return f"{_dotted(path)}: {reason}"
    return f"{_dotted(path)}: {reason} (got {detail['input']!r})"


def _dotted(path: list[str]) -> str:
    return ".".join(path) or "(top level)"
