"""``allocflow policy``: validate a policy file, or print the effective policy."""

import argparse
import json
import sys
from pathlib import Path

from allocflow.connectors.policy_file import PolicyError, default_policy, load_policy
from allocflow.flows.settings import Settings
from allocflow.models.policy import Policy


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``policy`` sub-command with its ``check`` and ``show`` actions."""
    parser = subparsers.add_parser(
        "policy", help="validate an allocation policy file or print the effective policy"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="validate a policy file (.toml, .yaml or .yml)")
    check.add_argument("file", type=Path, metavar="FILE", help="policy file to validate")
    show = actions.add_parser(
        "show", help="print the policy as JSON (also valid YAML), the default without FILE"
    )
    show.add_argument("file", type=Path, nargs="?", metavar="FILE", help="policy file to show")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, _settings: Settings) -> int:
    """Check or show a policy; exit 2 with every problem listed when it is invalid."""
    try:
        policy = default_policy() if args.file is None else load_policy(args.file)
    except PolicyError as error:
        print(error, file=sys.stderr)
        return 2
    print(summary(args.file, policy) if args.action == "check" else policy_json(policy))
    return 0


def summary(path: Path, policy: Policy) -> str:
    """Return the one-line verdict on a valid policy file."""
    counts = (
        f"{len(policy.tiers)} tiers, {len(policy.nodes)} nodes, "
        f"{len(policy.protection)} protection rules, "
        f"{len(policy.sourcing.home_nodes)} regions, "
        f"{len(policy.sourcing.exclusions)} exclusions"
    )
    return f"{path}: ok (policy_version {policy.policy_version}; {counts})"


def policy_json(policy: Policy) -> str:
    """Return the policy as indented JSON, every default filled in."""
    return json.dumps(policy.model_dump(mode="json"), indent=2)
