"""``allocflow dashboard``: serve the Streamlit dashboard over a landed DuckDB file."""

import argparse
import sys
import threading
from pathlib import Path

from allocflow.connectors.landing.snapshot import snapshot_path
from allocflow.dashboards.server import DashboardStartError, StreamlitServer
from allocflow.flows.commands.broker_cmd import stop_signals
from allocflow.flows.settings import Settings

_LIVENESS_CHECK_S = 0.5


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add the ``dashboard`` sub-command."""
    parser = subparsers.add_parser(
        "dashboard",
        help="serve the Streamlit dashboard over a landed DuckDB file until Ctrl-C",
    )
    parser.add_argument(
        "--db",
        type=Path,
        required=True,
        help="the landing's DuckDB file (it or its published PATH.snapshot must exist)",
    )
    parser.add_argument("--port", type=int, default=8501, help="TCP port (0 picks a free one)")
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, _settings: Settings) -> int:
    """Check the database, serve the dashboard, print its URL, wait for a stop signal."""
    db: Path = args.db.resolve()
    snapshot = snapshot_path(db)
    if not db.exists() and not snapshot.exists():
        print(
            f"allocflow dashboard: neither {db} nor its snapshot {snapshot} exists; "
            "land some events first (or pass the landing's --db path)",
            file=sys.stderr,
        )
        return 2
    server = StreamlitServer(app_args=["--db", str(db)], port=args.port, address=args.address)
    try:
        with stop_signals() as stop, server:
            print(f"Dashboard: {server.url}", flush=True)
            print("Ctrl-C stops it.", flush=True)
            return _wait(server, stop)
    except DashboardStartError as error:
        print(f"allocflow dashboard: {error}", file=sys.stderr)
        return 1


def _wait(server: StreamlitServer, stop: threading.Event) -> int:
    while not stop.wait(_LIVENESS_CHECK_S):
        if not server.running:
            print(f"allocflow dashboard: the server exited:\n{server.log_tail()}", file=sys.stderr)
            return 1
    return 0
