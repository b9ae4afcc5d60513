"""Read an allocation policy from a TOML or YAML file, or the packaged default.

Every way a policy file can be wrong ends in one ``PolicyError`` that names the file
and lists each problem as ``field.path: reason (got value)``, so a bad policy stops
the pipeline before it reads any event.

The input is bounded before anything expands it: at most :data:`MAX_POLICY_BYTES`
read, nesting at most :data:`MAX_DEPTH` deep, at most :data:`MAX_VALUES` values
once YAML aliases are expanded (a "billion laughs" file is refused while it is
parsed). Values echoed in errors are cut (:data:`SHOWN_CHARS`), and at most
:data:`MAX_PROBLEMS` problems are listed.

Example:
    >>> default_policy().policy_version
    'default-2026.1'
"""

import re
import reprlib
import tomllib
from collections.abc import Hashable, Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any, cast

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from allocflow.models.policy import Policy

MAX_POLICY_BYTES = 1_048_576
"""The largest policy file read (1 MiB); real policies are a few KB."""
MAX_DEPTH = 32
"""The deepest nesting of tables and lists accepted; a valid policy nests 6 deep."""
MAX_VALUES = 50_000
"""The most values (scalars, lists and tables, YAML aliases expanded) in a policy."""
MAX_PROBLEMS = 100
"""The most problems one error lists; the rest are counted."""
SHOWN_CHARS = 80
"""Characters of an offending value shown in an error."""

_PARSERS = {".toml": "TOML", ".yaml": "YAML", ".yml": "YAML"}
_LIBYAML_TOO_DEEP = "exceeded maximum nesting depth"
"""libyaml's own refusal of flow collections nested over 1,000 deep, met before ours."""
_TOML_TOKEN = re.compile(
    "|".join(
        (
            r'"""(?:[^\\]|\\[\s\S])*?"""',  # multi-line basic string
            r"'''[\s\S]*?'''",  # multi-line literal string
            r'"(?:[^"\\\n]|\\.)*"',  # basic string
            r"'[^'\n]*'",  # literal string
            r"#[^\n]*",  # comment
            r"[\[\]{}=,.\n]",
        )
    )
)
"""TOML strings and comments (skipped whole), and the characters that open, close or
separate keys and values."""
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
        self.problems = [_cut(problem, 4 * SHOWN_CHARS) for problem in problems[:MAX_PROBLEMS]]
        listed = "\n".join(f"  {problem}" for problem in self.problems)
        more = len(problems) - len(self.problems)
        if more:
            listed += f"\n  … and {more} more problems"
        super().__init__(f"{source}: invalid policy\n{listed}")


class _InputTooLargeError(yaml.MarkedYAMLError):
    """A YAML document past one of the input bounds."""


class _BoundedComposer(yaml.composer.Composer):
    """Composes YAML within the bounds.

    Nodes are counted as they are composed, each alias as the size of the node it
    names, so a document that would expand past :data:`MAX_VALUES` is refused
    before anything is built from it; nesting past :data:`MAX_DEPTH` is refused
    before the (recursive) composer goes deeper. Events come from libyaml where
    PyYAML has it (ten times faster than its pure-Python parser, so even the
    largest file accepted is parsed in well under a second).
    """

    def __init__(self) -> None:
        super().__init__()
        self._depth = 0
        self._composed = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        """Compose a node, failing past the depth and size bounds."""
        event: yaml.Event = self.peek_event()  # type: ignore[attr-defined]
        if self._depth >= MAX_DEPTH:
            raise _too_large(f"nested deeper than {MAX_DEPTH} levels", event)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if node is None:
            return None
        if isinstance(event, yaml.AliasEvent):
            if id(node) not in self._sizes:
                raise _too_large("an alias refers to a collection that contains it", event)
            return node
        self._composed += 1
        size = 1 + sum(self._sizes[id(child)] for child in _children(node))
        if max(size, self._composed) > MAX_VALUES:
            raise _too_large(f"more than {MAX_VALUES:,} values once aliases are expanded", event)
        self._sizes[id(node)] = size
        return node


class _UniqueKeyConstructor(yaml.constructor.SafeConstructor):
    """The safe constructor, rejecting a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        """Build a mapping, failing on a duplicate key (PyYAML keeps the last one silently)."""
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {_shown(key)}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _LibyamlPolicyLoader(
        _BoundedComposer, CParser, _UniqueKeyConstructor, yaml.resolver.Resolver
    ):
        """The policy loader on libyaml's event parser."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _BoundedComposer.__init__(self)
            _UniqueKeyConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)


class _PurePolicyLoader(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    _BoundedComposer,
    _UniqueKeyConstructor,
    yaml.resolver.Resolver,
):
    """The policy loader on PyYAML's own parser, where libyaml is missing."""

    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        _BoundedComposer.__init__(self)
        _UniqueKeyConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)


_PolicyLoader = cast(  # a loader like yaml's own: parser, composer, constructor, resolver
    type[yaml.SafeLoader], _LibyamlPolicyLoader if yaml.__with_libyaml__ else _PurePolicyLoader
)


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
        with path.open("rb") as file:
            content = file.read(MAX_POLICY_BYTES + 1)
        text = content.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PolicyError(source, [f"cannot read the file: {error}"]) from error
    if len(content) > MAX_POLICY_BYTES:
        raise PolicyError(
            source,
            [
                f"too large: more than {MAX_POLICY_BYTES:,} bytes; a policy is a few KB "
                "(is this the policy file?)"
            ],
        )
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
    nesting = _toml_nesting_problem(text)
    if nesting is not None:
        raise PolicyError(source, [f"too large: {nesting}"])
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(source, [f"not valid TOML: {error}"]) from error
    except RecursionError as error:
        raise PolicyError(source, [f"too large: nested deeper than {MAX_DEPTH} levels"]) from error
    problem = _shape_problem(data)
    if problem is not None:
        raise PolicyError(source, [f"too large: {problem}"])
    return data


def _toml_nesting_problem(text: str) -> str | None:
    """Return why TOML text nests too deep to parse, or None.

    Python's TOML parser recurses into arrays and inline tables, and its cost grows
    with the square of a dotted key's length (``a.a.a…`` 20,000 parts took 6 s and
    1.6 GB), so both are bounded on the text: brackets open at once, and dots in one
    key (strings and comments skipped).
    """
    depth = dots = 0
    for token in _TOML_TOKEN.finditer(text):
        mark = token.group()
        if mark in "[{":
            depth += 1
            dots = 0
        elif mark in "]}":
            depth -= 1
            dots = 0
        elif mark == ".":
            dots += 1
        elif mark in "=,\n":
            dots = 0
        if depth > MAX_DEPTH or dots >= MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels (at line {_line_of(text, token)})"
    return None


def _line_of(text: str, token: re.Match[str]) -> int:
    return text.count("\n", 0, token.start()) + 1


def _shape_problem(data: dict[str, Any]) -> str | None:
    """Return why parsed data is past the depth or size bounds, or None (no recursion)."""
    values = 0
    pending: list[tuple[Any, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        values += 1
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        if values > MAX_VALUES:
            return f"more than {MAX_VALUES:,} values"
        if isinstance(value, dict):
            pending += [(item, depth + 1) for item in value.values()]
        elif isinstance(value, list):
            pending += [(item, depth + 1) for item in value]
    return None


def _parse_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.load(text, Loader=_PolicyLoader)  # noqa: S506 (a SafeLoader subclass)
    except _InputTooLargeError as error:
        raise PolicyError(source, [f"too large: {_yaml_reason(error)}"]) from error
    except yaml.MarkedYAMLError as error:
        if error.problem == _LIBYAML_TOO_DEEP:
            error.problem = f"nested deeper than {MAX_DEPTH} levels"
            raise PolicyError(source, [f"too large: {_yaml_reason(error)}"]) from error
        raise PolicyError(source, [f"not valid YAML: {_yaml_reason(error)}"]) from error
    except yaml.YAMLError as error:
        raise PolicyError(source, [f"not valid YAML: {error}"]) from error
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise PolicyError(source, [f"the document must be a mapping of fields (got {kind})"])
    return data


def _children(node: yaml.Node) -> Iterator[yaml.Node]:
    """Yield the nodes a composed collection holds (keys and values of a mapping)."""
    if isinstance(node, yaml.SequenceNode):
        yield from node.value
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key
            yield value


def _too_large(reason: str, event: yaml.Event) -> _InputTooLargeError:
    mark = cast(yaml.error.Mark, event.start_mark)  # libyaml's marks have the same fields
    return _InputTooLargeError(problem=reason, problem_mark=mark)


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
    return f"{_dotted(path)}: {reason} (got {_shown(detail['input'])})"


def _dotted(path: list[str]) -> str:
    return ".".join(path) or "(top level)"


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel = 2
_SHORT_REPR.maxstring = SHOWN_CHARS
_SHORT_REPR.maxother = SHOWN_CHARS
_SHORT_REPR.maxlong = SHOWN_CHARS
for _limit in ("maxdict", "maxlist", "maxtuple", "maxset"):
    setattr(_SHORT_REPR, _limit, 4)


def _shown(value: Any) -> str:
    """Return ``repr(value)`` cut to about :data:`SHOWN_CHARS` characters, at any size."""
    return _cut(_SHORT_REPR.repr(value))


def _cut(text: str, limit: int = SHOWN_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}…"
