"""``allocflow settings``: show the effective settings, or document them."""

import argparse
import json

from pydantic.fields import FieldInfo

from allocflow.connectors.kafka_config import redact
from allocflow.flows.settings import ENV_PREFIX, Settings
from allocflow.models.limits import field_bounds


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``settings`` sub-command."""
    parser = subparsers.add_parser(
        "settings", help="show the effective settings (secrets masked) or document them"
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print the reference table of every setting"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the settings as JSON (secrets masked) or as a Markdown reference."""
    print(settings_reference() if args.markdown else effective_settings(settings))
    return 0


def effective_settings(settings: Settings) -> str:
    """Return the settings as indented JSON; secret values are masked.

    Passwords are ``SecretStr`` (shown as ``**********``); in ``kafka_extra`` the
    properties librdkafka treats as secrets are masked too.
    """
    shown = settings.model_dump(mode="json")
    shown["kafka_extra"] = redact(settings.kafka_extra)
    return json.dumps(shown, indent=2, sort_keys=True)


def settings_reference() -> str:
    """Return a Markdown table of every setting: env var, default, allowed range, meaning."""
    rows = [
        "| setting | environment variable | default | allowed | meaning |",
        "|---|---|---|---|---|",
    ]
    for name, info in Settings.model_fields.items():
        variable = f"`{ENV_PREFIX}{name.upper()}`"
        allowed = field_bounds(info) or "—"
        rows.append(
            f"| `{name}` | {variable} | {_default(info)} | {allowed} | {info.description} |"
        )
    return "\n".join(rows)


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        return f"`{json.dumps(info.get_default(call_default_factory=True))}`"
    return "unset" if info.default is None else f"`{info.default}`"
