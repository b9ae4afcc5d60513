"""Stale-source alerts on a fault-free stream with quiet nights and weekends.

The simulator's distributor works around the clock, so its streams have no quiet
nights. This benchmark gives them some: it simulates a fault-free stream
(``allocflow simulate --faults none``) and moves every event into business hours
(Mon-Fri 07:00-19:00 Europe/Berlin) by an order-preserving map of event time: the
n-th hour of the stream becomes the n-th business hour after Monday 2 March 2026,
07:00 in Berlin. Nothing else changes (same events, same order, the same silences
counted in business hours), so every source is quiet each night and weekend and
otherwise as busy as the simulator made it.

The stream is replayed through the gates (``allocflow.quality.accounting.account``,
the dataflow's merge order) twice: with the default settings (every source always
active, today's behaviour) and with that business-hours calendar for every feed and
node (``ALLOCFLOW_DQ_ACTIVE_HOURS_BY_FEED='{"*": "Mon-Fri 07:00-19:00 Europe/Berlin"}'``
and the same ``..._BY_NODE``). Printed and written to ``bench/results/quiet_nights.json``:
stale-source alerts (feeds, nodes) and every other alert, per scenario.

Usage::

    .venv/bin/python bench/quiet_nights.py [--orders 2000] [--seed 7]
"""

import argparse
import contextlib
import io
import json
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from allocflow.connectors.simulator.scenarios import SCENARIOS
from allocflow.flows.cli import main as allocflow
from allocflow.models.activity_calendar import ActivityCalendar
from allocflow.models.dq_alerts import DqCheck
from allocflow.models.topics import InputTopic
from allocflow.quality.accounting import account
from allocflow.quality.settings import GateSettings

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "quiet_nights.json"
BUSINESS_HOURS = "Mon-Fri 07:00-19:00 Europe/Berlin"
ANCHOR = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)  # Monday 07:00 in Berlin
_DAY = timedelta(hours=12)  # business hours per working day
_TICK = timedelta(microseconds=1)


class BusinessClock:
    """Maps elapsed stream time onto business hours after :data:`ANCHOR`."""

    def __init__(self, calendar: ActivityCalendar) -> None:
        """Map onto ``calendar`` (12 active hours per working day)."""
        self._calendar = calendar
        self._day_starts: dict[int, datetime] = {}

    def moment(self, elapsed: timedelta) -> datetime:
        """The business moment ``elapsed`` of business time after the anchor."""
        day, offset = divmod(elapsed, _DAY)
        return self._day_start(int(day)) + offset

    def _day_start(self, day: int) -> datetime:
        if day not in self._day_starts:
            reached = self._calendar.after_active(ANCHOR, day * _DAY + _TICK)
            if reached is None:
                raise ValueError(f"day {day} is beyond the calendar's horizon")
            self._day_starts[day] = reached - _TICK
        return self._day_starts[day]


def simulate(out: Path, orders: int, scenario: str, seed: int) -> None:
    """Write one fault-free simulated stream to ``out``."""
    args = ["simulate", "--orders", str(orders), "--scenario", scenario, "--seed", str(seed)]
    args += ["--faults", "none", "--out", str(out), "--no-progress"]
    with contextlib.redirect_stdout(io.StringIO()):
        if allocflow(args) != 0:
            raise RuntimeError(f"allocflow {' '.join(args)} failed")


def into_business_hours(source: Path, target: Path) -> int:
    """Copy the stream in ``source`` to ``target`` with every event moved into business hours.

    Returns:
        The events moved.
    """
    files = {t.value: source / f"{t.value}.jsonl" for t in InputTopic}
    first = min(
        datetime.fromisoformat(orjson.loads(line)["event_time"])
        for path in files.values()
        for line in path.read_bytes().splitlines()
    )
    clock = BusinessClock(ActivityCalendar.parse(BUSINESS_HOURS))
    target.mkdir(parents=True)
    moved = 0
    for topic, path in files.items():
        lines = []
        for line in path.read_bytes().splitlines():
            event = orjson.loads(line)
            elapsed = datetime.fromisoformat(event["event_time"]) - first
            event["event_time"] = clock.moment(elapsed).isoformat().replace("+00:00", "Z")
            lines.append(orjson.dumps(event))
            moved += 1
        (target / f"{topic}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (target / "manifest.json").write_bytes((source / "manifest.json").read_bytes())
    return moved


def alerts_of(directory: Path, settings: GateSettings) -> dict[str, Any]:
    """Replay ``directory`` through the gates; count stale-source and other alerts."""
    result = account(directory, settings)
    stale = [a for a in result.alerts if a.check is DqCheck.STALE_FEED]
    return {
        "stale_feed": sum("feed" in a.entity for a in stale),
        "stale_node": sum("node_id" in a.entity for a in stale),
        "stale_by_source": dict(
            sorted(Counter(a.entity.get("feed") or a.entity["node_id"] for a in stale).items())
        ),
        "other_alerts": dict(
            sorted(
                Counter(
                    a.check.value for a in result.alerts if a.check is not DqCheck.STALE_FEED
                ).items()
            )
        ),
    }


def main() -> int:
    """Run every scenario, print the table, write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    always = GateSettings()
    calendars = GateSettings(
        active_hours_by_feed={"*": BUSINESS_HOURS}, active_hours_by_node={"*": BUSINESS_HOURS}
    )
    results: dict[str, Any] = {
        "orders": args.orders,
        "seed": args.seed,
        "calendar": BUSINESS_HOURS,
        "scenarios": {},
    }
    print(f"{'scenario':<20} {'events':>7} {'stale before':>13} {'stale after':>12}  other alerts")
    for scenario in sorted(SCENARIOS):
        with tempfile.TemporaryDirectory() as work:
            simulate(Path(work) / "sim", args.orders, scenario, args.seed)
            events = into_business_hours(Path(work) / "sim", Path(work) / "business")
            before = alerts_of(Path(work) / "business", always)
            after = alerts_of(Path(work) / "business", calendars)
        results["scenarios"][scenario] = {"events": events, "always": before, "business": after}
        print(
            f"{scenario:<20} {events:>7} {before['stale_feed'] + before['stale_node']:>13} "
            f"{after['stale_feed'] + after['stale_node']:>12}  {after['other_alerts'] or '-'}"
        )
    RESULTS_PATH.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
