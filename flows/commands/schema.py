"""``allocflow schema``: write the contract files, or check that committed ones are current."""

import argparse
import sys
from pathlib import Path

from allocflow.flows.contract_docs import contract_files
from allocflow.flows.settings import Settings


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``schema`` sub-command."""
    parser = subparsers.add_parser(
        "schema",
        help="generate the JSON Schemas and the AsyncAPI document of the event contract",
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, metavar="DIR", help="write the contract files into DIR")
    target.add_argument(
        "--check",
        type=Path,
        metavar="DIR",
        help="exit 1 if the files in DIR differ from freshly generated ones",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, _settings: Settings) -> int:
    """Write the contract files (``--out``) or compare them with a directory (``--check``)."""
    if args.out is not None:
        for path in write_contract(args.out):
            print(f"wrote {path}")
        return 0
    problems = check_contract(args.check)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"regenerate with: allocflow schema --out {args.check}", file=sys.stderr)
        return 1
    print(f"{args.check}: contract files are up to date")
    return 0


def write_contract(directory: Path) -> list[Path]:
    """Write every contract file into ``directory`` (created if missing).

    Args:
        directory: Where the files go.

    Returns:
        The paths written, in name order.
    """
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in contract_files().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def check_contract(directory: Path) -> list[str]:
    """Compare ``directory`` with freshly generated contract files.

    Args:
        directory: Where the committed files are.

    Returns:
        One line per file that is missing, differs, or is a stale ``.json`` file that
        generation no longer produces; empty when the directory is up to date.
    """
    expected = contract_files()
    problems = []
    for name, text in expected.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"missing: {path}")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"differs: {path}")
    if directory.is_dir():
        for path in sorted(directory.glob("*.json")):
            if path.name not in expected:
                problems.append(f"unexpected: {path} (no longer generated; delete it)")
    return problems
