"""The lander: reads batches, lands them, publishes the dashboard snapshot.

It is its own process, beside the dataflow rather than inside it: the DuckDB file
has one writer, its offsets commit with the rows they produced (so a restart
resumes exactly), a lander restart does not restart the allocation flow, and a
pipeline restart does not take the dashboards down — they keep reading the last
published snapshot.
"""

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from allocflow.connectors.landing.records import LandingRecord
from allocflow.connectors.landing.snapshot import Publication, publish_snapshot
from allocflow.connectors.landing.sources import KafkaLandingSource
from allocflow.connectors.landing.writer import BatchReport, DuckDBWriter

_LOG = logging.getLogger(__name__)


@dataclass
class LandingTotals:
    """What a landing run did so far.

    Attributes:
        records: Messages read.
        batches: Batches landed.
        landing_seconds: Time spent landing (decode to commit).
        publications: Snapshots published.
        last_publication: The newest one.
    """

    records: int = 0
    batches: int = 0
    landing_seconds: float = 0.0
    publications: int = 0
    last_publication: Publication | None = field(default=None)

    def add(self, report: BatchReport) -> None:
        """Count one landed batch."""
        self.records += report.records
        self.batches += 1
        self.landing_seconds += report.seconds

    @property
    def records_per_second(self) -> float:
        """Landing throughput (messages per second of landing time)."""
        return self.records / self.landing_seconds if self.landing_seconds else 0.0


@dataclass(frozen=True)
class PeriodicTask:
    """Work that needs the writer's connection, run between batches on a schedule.

    The expectation suites run this way: only the writer may write ``dq_results``.

    Attributes:
        name: Name for the log.
        every_s: Seconds between runs (the first runs after the first batch).
        run: The work; returns a one-line summary for the log.
    """

    name: str
    every_s: float
    run: Callable[[duckdb.DuckDBPyConnection], str]


class Lander:
    """Lands batches with one writer and publishes a snapshot at most every few seconds."""

    def __init__(
        self,
        writer: DuckDBWriter,
        snapshot: Path | None,
        publish_every_s: float = 1.5,
        tasks: Sequence[PeriodicTask] = (),
    ) -> None:
        """Land with ``writer``; publish to ``snapshot`` (None: never); run ``tasks``."""
        self.writer = writer
        self.totals = LandingTotals()
        self._snapshot = snapshot
        self._publish_every_s = publish_every_s
        self._published_at = float("-inf")
        self._unpublished = False
        self._tasks = tuple(tasks)
        self._task_due = dict.fromkeys((t.name for t in self._tasks), float("-inf"))

    def land_batches(self, batches: Iterable[list[LandingRecord]]) -> LandingTotals:
        """Land every batch, then publish a final snapshot."""
        for batch in batches:
            self._land(batch)
        self._run_due_tasks(force=True)
        self.publish()
        return self.totals

    def follow(
        self,
        source: KafkaLandingSource,
        stop: threading.Event,
        *,
        batch_size: int = 5000,
        max_wait_s: float = 1.0,
    ) -> LandingTotals:
        """Land from Kafka until ``stop`` is set, then publish a final snapshot.

        A batch closes when it is full or ``max_wait_s`` after its first message.
        """
        while not stop.is_set():
            batch = _collect(source, stop, batch_size, max_wait_s)
            if batch:
                self._land(batch)
            elif self._unpublished:
                self.publish()
        self.publish()
        return self.totals

    def _run_due_tasks(self, *, force: bool = False) -> None:
        """Run the tasks that are due (all of them when ``force``), logging failures.

        A failing task is logged and retried at its next slot: validation trouble
        must not stop landing.
        """
        for task in self._tasks:
            if not force and time.monotonic() < self._task_due[task.name]:
                continue
            self._task_due[task.name] = time.monotonic() + task.every_s
            started = time.perf_counter()
            try:
                summary = task.run(self.writer.connection)
            except Exception:
                _LOG.exception("%s failed; it runs again in %.0f s", task.name, task.every_s)
                self._roll_back_leftovers()
                continue
            self._unpublished = True
            _LOG.info("%s in %.1f s: %s", task.name, time.perf_counter() - started, summary)

    def publish(self) -> None:
        """Publish a snapshot now, if there is somewhere to publish it."""
        if self._snapshot is None:
            return
        publication = publish_snapshot(self.writer.connection, self._snapshot)
        self.totals.publications += 1
        self.totals.last_publication = publication
        self._published_at = time.monotonic()
        self._unpublished = False
        _LOG.debug("snapshot published in %.3f s", publication.seconds)

    def _roll_back_leftovers(self) -> None:
        """End a transaction a failed task may have left open, so landing goes on."""
        try:
            self.writer.connection.rollback()
        except duckdb.TransactionException:
            return

    def _land(self, batch: list[LandingRecord]) -> None:
        report = self.writer.land(batch)
        self.totals.add(report)
        self._unpublished = True
        _LOG.debug(
            "landed %d records (%d new events, %d new decisions) in %.3f s",
            report.records,
            report.new_events,
            report.new_decisions,
            report.seconds,
        )
        self._run_due_tasks()
        if time.monotonic() - self._published_at >= self._publish_every_s:
            self.publish()


def _collect(
    source: KafkaLandingSource, stop: threading.Event, batch_size: int, max_wait_s: float
) -> list[LandingRecord]:
    batch = source.poll(batch_size, timeout_s=0.25)
    deadline = time.monotonic() + max_wait_s
    while batch and len(batch) < batch_size and not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        more = source.poll(batch_size - len(batch), timeout_s=min(remaining, 0.25))
        if not more:
            break
        batch.extend(more)
    return batch
