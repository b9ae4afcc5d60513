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
        quarantined: Messages not landed because they hold a value no column can hold
            (each is a ``dq_results`` row, origin ``landing``).
        batches: Batches landed.
        landing_seconds: Time spent landing (decode to commit).
        publications: Snapshots published.
        last_publication: The newest one.
    """

    records: int = 0
    quarantined: int = 0
    batches: int = 0
    landing_seconds: float = 0.0
    publications: int = 0
    last_publication: Publication | None = field(default=None)

    def add(self, report: BatchReport) -> None:
        """Count one landed batch."""
        self.records += report.records
        self.quarantined += report.quarantined
        self.batches += 1
        self.landing_seconds += report.seconds

    @property
    def records_per_second(self) -> float:
        """Landing throughput (messages per second of landing time)."""
        return self.records / self.landing_seconds if self.landing_seconds else 0.0


@dataclass(frozen=True)
class DataChangeTask:
    """Work over the landed data that needs the writer's connection: run when it changed.

    The expectation suites run this way: only the writer may write ``dq_results``. The
    task runs between batches, and while the input is quiet, whenever a batch landed
    since its last run and at least ``min_interval_s`` passed since then (the first run
    follows the first batch); a finite landing ends with one more run if anything landed
    since the last. So the latest run always catches up with the landed data, however
    the stream slows or stops, without running while nothing changes.

    Attributes:
        name: Name for the log.
        min_interval_s: Fewest seconds between two runs while data keeps landing.
        run: The work; returns a one-line summary for the log.
    """

    name: str
    min_interval_s: float
    run: Callable[[duckdb.DuckDBPyConnection], str]


@dataclass
class _TaskProgress:
    """When a task may run next, and how many landed batches its last run saw."""

    not_before: float = float("-inf")
    batches_seen: int = 0


class Lander:
    """Lands batches with one writer and publishes a snapshot at most every few seconds."""

    def __init__(
        self,
        writer: DuckDBWriter,
        snapshot: Path | None,
        publish_every_s: float = 1.5,
        tasks: Sequence[DataChangeTask] = (),
    ) -> None:
        """Land with ``writer``; publish to ``snapshot`` (None: never); run ``tasks``."""
        self.writer = writer
        self.totals = LandingTotals()
        self._snapshot = snapshot
        self._publish_every_s = publish_every_s
        self._published_at = float("-inf")
        self._unpublished = False
        self._tasks = tuple(tasks)
        self._progress = {task.name: _TaskProgress() for task in self._tasks}
        self.busy = False
        """True while a batch lands or a task runs."""
        self.idle_since = time.monotonic()
        """When the last batch landed or the last task ended (``time.monotonic``)."""

    def land_batches(self, batches: Iterable[list[LandingRecord]]) -> LandingTotals:
        """Land every batch, run the tasks over what they have not seen, publish a snapshot."""
        for batch in batches:
            self._land(batch)
        self._run_due_tasks(final=True)
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
        """Land from Kafka until ``stop`` is set; run the tasks one last time; publish.

        A batch closes when it is full or ``max_wait_s`` after its first message. While
        no message comes, the tasks catch up with what landed (when due).
        """
        while not stop.is_set():
            batch = _collect(source, stop, batch_size, max_wait_s)
            if batch:
                self._land(batch)
                continue
            self._run_due_tasks()
            if self._unpublished:
                self.publish()
        self._run_due_tasks(final=True)
        self.publish()
        return self.totals

    def _run_due_tasks(self, *, final: bool = False) -> None:
        """Run each task that has not seen the latest batch and is due (or ``final``).

        A failing task is logged and retried after its interval: validation trouble
        must not stop landing.
        """
        for task in self._tasks:
            progress = self._progress[task.name]
            if progress.batches_seen == self.totals.batches:
                continue
            if not final and time.monotonic() < progress.not_before:
                continue
            progress.not_before = time.monotonic() + task.min_interval_s
            batches = self.totals.batches
            started = time.perf_counter()
            try:
                summary = self._run_task(task)
            except Exception:
                _LOG.exception("%s failed; it runs again in %.0f s", task.name, task.min_interval_s)
                self._roll_back_leftovers()
                continue
            progress.batches_seen = batches
            self._unpublished = True
            _LOG.info("%s in %.1f s: %s", task.name, time.perf_counter() - started, summary)

    def _run_task(self, task: DataChangeTask) -> str:
        self.busy = True
        try:
            return task.run(self.writer.connection)
        finally:
            self.busy = False
            self.idle_since = time.monotonic()

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
        self.busy = True
        try:
            report = self.writer.land(batch)
        finally:
            self.busy = False
            self.idle_since = time.monotonic()
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
