"""The ``allocflow`` command line.

Settings are read once here, from the environment, and passed to the sub-command.
"""

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import version
from typing import Protocol

from pydantic import ValidationError
from pydantic_settings import SettingsError

from allocflow.connectors.input_stop import EXIT_STOPPED
from allocflow.flows.commands import (
    broker_cmd,
    dashboard_cmd,
    demo,
    land_cmd,
    policy_cmd,
    quality_cmd,
    recovery_cmd,
    run_cmd,
    schema,
    settings_cmd,
    simulate,
    tail_cmd,
)
from allocflow.flows.settings import ENV_PREFIX, Settings
from allocflow.models.limits import field_bounds


class _Registrar(Protocol):
    def __call__(self, subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
        """Add a sub-command parser whose defaults carry ``handler``."""


Handler = Callable[[argparse.Namespace, Settings], int]

_REGISTRARS: tuple[_Registrar, ...] = (
    settings_cmd.register,
    policy_cmd.register,
    schema.register,
    broker_cmd.register,
    tail_cmd.register,
    simulate.register,
    run_cmd.register,
    demo.register,
    dashboard_cmd.register,
    land_cmd.register,
    quality_cmd.register,
    recovery_cmd.register,
)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="allocflow",
        description="Streaming order allocation and process intelligence for distributors.",
    )
    parser.add_argument("--version", action="version", version=version("allocflow"))
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _REGISTRARS:
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings()
    except ValidationError as error:
        print(_settings_error(error), file=sys.stderr)
        return 2
    except SettingsError as error:
        print(f"invalid settings: {error} (mappings must be JSON objects)", file=sys.stderr)
        return 2
    handler: Handler = args.handler
    try:
        return handler(args, settings)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_STOPPED


_SECRET_FIELDS = frozenset({"sasl_password", "ssl_key_password", "kafka_extra"})


_SHOWN_CHARS = 80
"""Characters of a rejected value echoed in an error; the rest is cut."""


def _settings_error(error: ValidationError) -> str:
    """Return one line per bad setting: field, variable, reason, value, allowed range."""
    lines = ["invalid settings:"]
    for detail in error.errors(include_url=False):
        field = ".".join(str(part) for part in detail["loc"])
        message = detail["msg"].removeprefix("Value error, ")
        if field:
            name = field.split(".")[0]
            got = "" if name in _SECRET_FIELDS else f" (got {_cut(repr(detail['input']))})"
            lines.append(f"  {field} ({ENV_PREFIX}{name.upper()}): {message}{got}{_allowed(name)}")
        else:
            lines.append(f"  {message}")
    return "\n".join(lines)


def _allowed(name: str) -> str:
    info = Settings.model_fields.get(name)
    allowed = "" if info is None else field_bounds(info)
    return f"; allowed: {allowed}" if allowed else ""


def _cut(text: str) -> str:
    if len(text) <= _SHOWN_CHARS:
        return text
    return f"{text[:_SHOWN_CHARS]}… ({len(text)} characters)"


if __name__ == "__main__":
    sys.exit(main())
