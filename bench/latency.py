"""Latency and freshness of a live allocflow: event produced → decision, → dashboard.

Issue 8, items 4 and 5. Item 4: the time from an input event being produced to its
decision being on the ``allocation-decisions`` topic, p50/p95/p99, at offered rates
of 5,000, 10,000 and 20,000 events/s (target: p99 ≤ 100 ms at 10,000 events/s).
Item 5: the time from an event being produced to it being visible to the dashboard,
p50/p99 (target ≤ 2 s).

The stream:
    ``allocflow simulate --orders N --seed 7 --faults none --out DIR`` (baseline
    scenario), N sized so the stream holds at least twice the messages the longest
    run sends (so the prefix sent is the one any longer simulation starts with, orders
    still arriving), is written once and cached in the temporary directory under a
    name made of N and a digest of the simulator's sources. Its messages are read in
    the dataflow's merge order (:func:`allocflow.quality.accounting.merged_messages`,
    i.e. ``MergedFilePartition``: event time, then topic) and decoded once, for each
    message's Kafka key (``message_key()``, the subject key ``allocflow simulate``
    keys by) and its ``event_id``. Every run produces a prefix of that same list:
    the initial stock, then the first simulated morning, whose ``orders`` messages
    are about a fifth of the prefix (about 4 % over a whole simulated day, where
    carrier scans dominate), so an event of the prefix costs the flow more than an
    average one.

The runs:
    Each of ``--rates`` (5,000, 10,000, 20,000) and ``--compare-rate`` (2,000) with
    the lowered fetch wait (below) and the lander; ``--compare-rate`` again with the
    default fetch wait; ``--alone-rate`` (5,000) without ``--db`` (no lander, so no
    freshness), to tell the lander's share of the machine; and a **backlog** control:
    the ``--alone-rate`` run's messages produced unpaced first, then ``allocflow run
    --no-tail`` over them, whose ``allocation flow finished in X s`` gives the
    events/s the flow manages on the same events when it is never short of input.

One run (one offered rate):
    A fresh embedded broker (Tansu, memory only) with the nine topics, four
    partitions each. ``allocflow run --bootstrap HOST:PORT --db PATH`` (tail mode,
    one worker, no recovery store) starts first; it runs the dataflow and, beside
    it, the ``allocflow land`` lander, which lands inputs and outputs into DuckDB and
    publishes ``PATH.snapshot`` for the dashboards every 1.5 s (its default
    ``--publish-every``; ``allocflow run`` passes none). Producing starts once the
    lander has logged its partitions and a further ``WARM_S`` seconds passed (the
    flow logs nothing when it starts reading; it starts well within that). A
    producer thread then sends ``rate * duration`` messages in merge order, paced
    in bursts every 5 ms (message ``i`` is due ``i / rate`` s after the start), each
    with its Kafka timestamp set explicitly (CreateTime) to the wall clock in
    milliseconds at its ``produce()`` call and its partition set explicitly to
    ``crc32(key) % 4`` (what librdkafka's default partitioner picks for a keyed
    message). The producer uses the package's producer settings with ``linger.ms``
    1, so the upstream producer's batching adds at most about a millisecond. After
    the last message the bench waits until the decisions topic stops growing for
    ``QUIET_S`` seconds (the flow drained) or ``DRAIN_LIMIT_S`` passed, then
    stops ``allocflow run`` with SIGINT and reads the decisions topic back.

Latency (item 4):
    Per ``allocation.decision`` record on ``allocation-decisions``: the record's Kafka
    timestamp minus the Kafka timestamp of its cause input message
    (``cause_event_id`` → the producer's ``event_id`` → produce time). The flow's
    sink (``CheckedKafkaSink``) sets no timestamp, so librdkafka stamps each decision
    with the wall clock at the sink's ``produce()`` call, in the flow's process;
    every process is on the same machine and clock. Order-status records on the same
    topic are not counted. Reported: p50/p95/p99/max over every decision whose cause
    was produced after the first ``WARMUP_EXCLUDED_S`` seconds and before the last
    ``END_EXCLUDED_S`` seconds of producing (at the end of a stream the aligned input
    holds the last events until the other partitions have been quiet for its
    ``idle_s``, 2 s, which a continuous stream never sees), the count, and p50/p99
    per ``TIMELINE_S`` seconds of produce time (growth shows a flow falling behind).

Keeping up:
    *Flow throughput while producing*: the stream position (index in produce order)
    of the newest cause among decisions stamped by the end of producing, over the
    seconds of producing; *lag at the end of producing*: events produced minus that
    position (what the flow had not yet decided on when the producer stopped);
    *drain*: the newest decision's timestamp minus the end of producing (includes
    the 2 s idle hold at the stream's end); *drained*: whether the decisions topic
    went quiet within ``DRAIN_LIMIT_S``. If the flow cannot keep up, latency grows
    with the run's length and its percentiles describe this run only; if it did not
    drain, decisions never made are missing and the percentiles are a lower bound.

Merge floor:
    The aligned Kafka input releases an event only when every *active* partition
    (one that received a message in the last ``idle_s`` = 2 s) has read an event at
    or after its event time. From the produce times and partitions alone, the floor
    this puts under latency is computed for every produced event: the latest, over
    the other 15 partitions whose newest message is older in event time, of the
    produce time of that partition's next message, capped at its previous message's
    produce time + 2 s. No fetching, processing or producing is in it (ties on equal
    event times are ignored).

Fetch wait:
    The package has no setting for the consumers' ``fetch.wait.max.ms`` (100 in
    ``KafkaConnection.consumer_config``), and Tansu answers every fetch only after
    the full wait, so each fetch delays what it returns by up to that wait.
    ``ALLOCFLOW_KAFKA_EXTRA`` is applied to every client the package makes (its
    consumers included; producers and admin clients ignore the property, with a
    librdkafka configuration warning), so the runs set
    ``ALLOCFLOW_KAFKA_EXTRA='{"fetch.wait.max.ms": "10"}'`` for the flow and the
    lander, and one more run at ``--compare-rate`` leaves it at the default 100 ms;
    the difference is what the fetch wait contributes.

Freshness (item 5):
    Every ``k``-th message of the ``orders`` topic is sampled (``k`` chosen for about
    ``FRESHNESS_SAMPLES`` per run). A reader thread checks the snapshot file every
    ``READ_EVERY_S`` s; on each new publication (new inode) it opens it read-only,
    reads ``snapshot_info.published_at`` and asks which sampled events already
    produced are in ``input_events`` (the event is visible) and which are the
    ``cause_event_id`` of a row of ``allocation_decisions`` (its decision is
    visible). An event's freshness is that publication's ``published_at`` minus the
    event's produce time (``published_at`` is taken just before the snapshot's last
    writes and rename, so this is at most tens of ms early); *seen* adds the reader's
    delay (the time it read the snapshot). Reported p50/p99 of both, per run, over
    the sampled events produced in the same window as the latency; events never seen
    are counted. The snapshot holds the 5,000 most recently placed orders and their
    events and decisions, so an order event stays visible only while its order is
    among those. The publication interval (1.5 s plus the time to land a batch and
    build the snapshot) bounds freshness from below.

Everything runs on one machine with 2 logical CPUs: the broker, the flow, the lander
(DuckDB) and the producer share them. The flow and the lander import allocflow as
committed at ``HEAD`` (exported, see ``bench/allocation.py``); ``--working-tree``
runs the checkout as it is. This process prepares, produces and reads with the
checkout.

Usage::

    .venv/bin/python bench/latency.py                # about 9 min (+ 35 s simulating once)
    .venv/bin/python bench/latency.py --quick        # 4 s per run, about 4 min, no file
    .venv/bin/python bench/latency.py --show         # the saved results

Results go to ``bench/results/latency.json`` (``--quick``: printed only).
"""

import argparse
import json
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import numpy as np
import orjson
from allocation import (
    child_import_root,
    code_under_test,
    load_average,
    log,
    machine_facts,
    output_of,
    simulate_command,
    simulator_digest,
    table,
)
from ceiling_peer import FINISHED, base_environment
from confluent_kafka import Producer
from landing import quantile

from allocflow.connectors.broker import EmbeddedBroker
from allocflow.connectors.kafka_config import KafkaConnection
from allocflow.connectors.kafka_io import read_topic
from allocflow.connectors.topic_counts import message_count
from allocflow.models.codec import decode_event
from allocflow.models.topics import InputTopic, OutputTopic
from allocflow.quality.accounting import merged_messages

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_PATH = BENCH_DIR / "results" / "latency.json"
DESCRIPTION = __doc__.splitlines()[0]

SEED = 7
PARTITIONS = 4
RATES = (5000, 10000, 20000)
DURATION_S = 20.0
COMPARE_RATE = 2000
ALONE_RATE = 5000
QUICK_DURATION_S = 4.0
LOW_FETCH_WAIT_MS = 10
DEFAULT_FETCH_WAIT_MS = 100
MESSAGES_PER_ORDER_GUESS = 5.0
PRODUCER_LINGER_MS = "1"
BURST_EVERY_S = 0.005
UNPACED = 1e12
"""A rate no producer reaches: the backlog is sent as fast as the client takes it."""
WARM_S = 5.0
READY_TIMEOUT_S = 60.0
QUIET_S = 5.0
DRAIN_LIMIT_S = 90.0
DRAIN_CHECK_S = 1.0
FRESHNESS_WAIT_S = 15.0
WARMUP_EXCLUDED_S = 1.0
END_EXCLUDED_S = 2.0
TIMELINE_S = 5.0
IDLE_S = 2.0
"""The aligned Kafka input's ``idle_s`` (its default, which ``allocflow run`` keeps)."""
FRESHNESS_SAMPLES = 2000
READ_EVERY_S = 0.25
STOP_TIMEOUT_S = 30.0
READ_TIMEOUT_S = 300.0
DECISION = b"allocation.decision"
LANDER_READY = "new partition(s)"
RUN_READY = "no recovery store"
_NEVER = math.inf


# --- the stream ---------------------------------------------------------------------------


class Outgoing(NamedTuple):
    """One input message to produce, in merge order."""

    topic: str
    key: bytes
    value: bytes
    event_id: str
    event_micros: int


def prepare_stream(messages: int, cache_root: Path, import_root: str) -> tuple[list[Outgoing], int]:
    """Simulate (or reuse) a stream of which ``messages`` messages are a steady prefix.

    The simulator places its orders over a span of event time and then plays out
    their shipments and deliveries, so a prefix is the same as that of any longer
    simulation only while orders are still being placed. The orders are raised until
    the simulated stream holds at least twice ``messages`` messages, which leaves the
    prefix well inside the span in which orders arrive.

    Returns:
        The first ``messages`` messages in merge order, and the orders simulated.
    """
    orders = math.ceil(messages / MESSAGES_PER_ORDER_GUESS)
    while True:
        directory = simulated(orders, cache_root, import_root)
        held = int(json.loads((directory / "manifest.json").read_text())["messages"])
        if held >= 2 * messages:
            break
        orders = math.ceil(orders * 1.5)
    started = time.monotonic()
    outgoing = load_messages(directory, messages)
    log(f"{len(outgoing):,} messages read in merge order in {time.monotonic() - started:.1f} s")
    return outgoing, orders


def simulated(orders: int, cache_root: Path, import_root: str) -> Path:
    """Return the directory of the simulated stream of ``orders`` orders, simulating it once."""
    digest = simulator_digest(import_root)
    directory = cache_root / f"allocflow-bench-latency-seed{SEED}-orders{orders}-sim{digest}"
    if not (directory / "manifest.json").is_file():
        shutil.rmtree(directory, ignore_errors=True)
        command = simulate_command(orders, directory)
        log(f"simulating {orders:,} orders: {' '.join(command)}")
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return directory


def load_messages(directory: Path, limit: int) -> list[Outgoing]:
    """Return the first ``limit`` messages of the files in merge order, with key and id."""
    outgoing: list[Outgoing] = []
    for message in merged_messages(directory):
        if len(outgoing) == limit:
            break
        event = decode_event(InputTopic(message.topic), message.value)
        micros = int(event.event_time.timestamp() * 1_000_000)
        key = event.message_key().encode()
        outgoing.append(Outgoing(message.topic, key, message.value, event.event_id, micros))
    return outgoing


def partition_of(key: bytes) -> int:
    """Return the partition librdkafka's default partitioner picks for a keyed message."""
    return zlib.crc32(key) % PARTITIONS


# --- producing ----------------------------------------------------------------------------


class PacedProducer(threading.Thread):
    """Produces messages at a fixed rate, each stamped with its produce time.

    Attributes:
        produce_ms: Kafka timestamp (epoch ms) given to each message sent so far.
        sent: Messages handed to ``produce()`` so far.
        started_ms: Wall clock when producing started.
        finished_ms: Wall clock after the last ``produce()`` call.
        flushed_ms: Wall clock when every message was acknowledged.
    """

    def __init__(self, connection: KafkaConnection, messages: Sequence[Outgoing], rate: float):
        super().__init__(name="bench-producer", daemon=True)
        config = connection.producer_config() | {"linger.ms": PRODUCER_LINGER_MS}
        self._producer = Producer(config)
        self._messages = messages
        self._rate = rate
        self.produce_ms = [0] * len(messages)
        self.sent = 0
        self.started_ms = 0
        self.finished_ms = 0
        self.flushed_ms = 0
        self.undelivered = 0

    def run(self) -> None:
        """Send every message on schedule, then flush."""
        started = time.monotonic()
        self.started_ms = _now_ms()
        total = len(self._messages)
        while self.sent < total:
            due = min(total, int((time.monotonic() - started) * self._rate) + 1)
            while self.sent < due:
                self._send(self.sent)
            self._producer.poll(0)
            time.sleep(BURST_EVERY_S)
        self.finished_ms = _now_ms()
        self.undelivered = self._producer.flush(60)
        self.flushed_ms = _now_ms()

    def _send(self, index: int) -> None:
        message = self._messages[index]
        while True:
            stamp = _now_ms()
            try:
                self._producer.produce(
                    message.topic,
                    message.value,
                    message.key,
                    partition=partition_of(message.key),
                    timestamp=stamp,
                )
            except BufferError:
                self._producer.poll(0.01)
            else:
                self.produce_ms[index] = stamp
                self.sent = index + 1
                return


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- freshness ----------------------------------------------------------------------------


@dataclass
class FreshnessProbe:
    """Reads each new snapshot and notes when sampled events and their decisions appear.

    Attributes:
        snapshot: The snapshot file.
        sampled: Stream positions of the sampled events.
        event_ids: ``event_id`` of every produced message, by position.
        producer: The producer, for what was sent and when.
        event_seen: Position → (published_at ms, read ms) of the first snapshot with the event.
        decision_seen: Position → the same for the first snapshot with its decision.
        publications: ``published_at`` (epoch ms) of every snapshot read.
        errors: Reader errors.
    """

    snapshot: Path
    sampled: list[int]
    event_ids: list[str]
    producer: PacedProducer
    event_seen: dict[int, tuple[int, int]] = field(default_factory=dict)
    decision_seen: dict[int, tuple[int, int]] = field(default_factory=dict)
    publications: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        """Read every new snapshot until ``stop`` is set."""
        last_inode = None
        while not self.stop.is_set():
            tick = time.monotonic()
            try:
                inode = self.snapshot.stat().st_ino
            except FileNotFoundError:
                inode = None
            if inode is not None and inode != last_inode:
                last_inode = inode
                try:
                    self._read()
                except duckdb.Error as error:
                    self.errors.append(str(error))
            self.stop.wait(max(0.0, READ_EVERY_S - (time.monotonic() - tick)))

    def pending(self) -> int:
        """Sampled events produced whose event or decision was not seen yet."""
        sent = self.producer.sent
        return sum(1 for p in self.sampled if p < sent and p not in self.event_seen)

    def _read(self) -> None:
        sent = self.producer.sent
        waiting = {
            self.event_ids[p]: p
            for p in self.sampled
            if p < sent and (p not in self.event_seen or p not in self.decision_seen)
        }
        con = duckdb.connect(str(self.snapshot), read_only=True)
        try:
            published = con.execute("SELECT max(published_at) FROM snapshot_info").fetchone()
            ids = list(waiting)
            events = con.execute(
                "SELECT event_id FROM input_events WHERE event_id IN (SELECT unnest(?))", [ids]
            ).fetchall()
            decided = con.execute(
                "SELECT DISTINCT cause_event_id FROM allocation_decisions "
                "WHERE cause_event_id IN (SELECT unnest(?))",
                [ids],
            ).fetchall()
        finally:
            con.close()
        read_ms = _now_ms()
        if published is None or published[0] is None:
            return
        published_ms = int(published[0].replace(tzinfo=UTC).timestamp() * 1000)
        self.publications.append(published_ms)
        for (event_id,) in events:
            self.event_seen.setdefault(waiting[event_id], (published_ms, read_ms))
        for (event_id,) in decided:
            self.decision_seen.setdefault(waiting[event_id], (published_ms, read_ms))


def sample_positions(messages: Sequence[Outgoing]) -> list[int]:
    """Return every ``k``-th position of an ``orders`` message, about FRESHNESS_SAMPLES."""
    orders = [i for i, m in enumerate(messages) if m.topic == InputTopic.ORDERS.value]
    stride = max(1, len(orders) // FRESHNESS_SAMPLES)
    return orders[::stride]


# --- one run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One measured run.

    Attributes:
        name: Label in tables and JSON.
        rate: Offered events per second.
        duration_s: Seconds of producing.
        fetch_wait_ms: ``fetch.wait.max.ms`` of the flow's and lander's consumers.
        land: Run with ``--db`` (the lander beside the flow, and freshness measured).
    """

    name: str
    rate: int
    duration_s: float
    fetch_wait_ms: int
    land: bool = True

    @property
    def messages(self) -> int:
        """Messages produced."""
        return int(self.rate * self.duration_s)

    @property
    def slug(self) -> str:
        """A file name for the run's files."""
        return f"rate{self.rate}-fetch{self.fetch_wait_ms}" + ("" if self.land else "-alone")


def flow_environment(bootstrap: str, fetch_wait_ms: int) -> dict[str, str]:
    """Return the environment of ``allocflow run``, with the fetch wait if not the default."""
    env = base_environment(bootstrap)
    if fetch_wait_ms != DEFAULT_FETCH_WAIT_MS:
        extra = {"fetch.wait.max.ms": str(fetch_wait_ms)}
        env["ALLOCFLOW_KAFKA_EXTRA"] = json.dumps(extra)
    return env


def reader_connection(bootstrap: str) -> KafkaConnection:
    """Return the bench's own connection: consumers that fetch every 10 ms."""
    return KafkaConnection(
        bootstrap, "bench-latency", extra={"fetch.wait.max.ms": str(LOW_FETCH_WAIT_MS)}
    )


def wait_until_ready(
    marker: tuple[Path, str], log_path: Path, process: "subprocess.Popen[bytes]"
) -> float:
    """Wait until a log file holds a line, then ``WARM_S`` more; return the wait.

    Args:
        marker: The log (the lander's, or the run's without one) and the text awaited.
        log_path: The run's log, for the error.
        process: ``allocflow run``.

    Raises:
        RuntimeError: ``allocflow run`` exited or never got ready.
    """
    started = time.monotonic()
    path, text = marker
    while text not in _text(path):
        if process.poll() is not None or time.monotonic() - started > READY_TIMEOUT_S:
            raise RuntimeError(f"allocflow run did not get ready:\n{_text(log_path)[-3000:]}")
        time.sleep(0.2)
    time.sleep(WARM_S)
    return time.monotonic() - started


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def wait_for_drain(connection: KafkaConnection, topic: str, producer: PacedProducer) -> bool:
    """Wait until ``topic`` stopped growing for ``QUIET_S``; False after ``DRAIN_LIMIT_S``."""
    producer.join()
    deadline = time.monotonic() + DRAIN_LIMIT_S
    last, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = message_count(connection, topic)
        if count != last:
            last, quiet_since = count, time.monotonic()
        elif time.monotonic() - quiet_since >= QUIET_S:
            return True
        time.sleep(DRAIN_CHECK_S)
    return False


def stop_process(process: "subprocess.Popen[bytes]") -> int:
    """Stop ``allocflow run`` with SIGINT (its lander stops with it); kill if it hangs."""
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def read_decisions(connection: KafkaConnection, topic: str) -> list[tuple[str, int]]:
    """Return (cause_event_id, Kafka timestamp ms) of every decision on ``topic``."""
    expected = message_count(connection, topic)
    records = read_topic(connection, topic, expected=expected, timeout_s=READ_TIMEOUT_S)
    decisions = []
    for record in records:
        if record.value is None or DECISION not in record.value:
            continue
        document = orjson.loads(record.value)
        if document.get("record_type") == DECISION.decode() and record.timestamp_ms:
            decisions.append((document["cause_event_id"], record.timestamp_ms))
    return decisions


def measure_run(spec: RunSpec, messages: Sequence[Outgoing], work: Path) -> dict[str, Any]:
    """Run the flow live at one offered rate; return latency, freshness and throughput.

    Raises:
        RuntimeError: The flow did not start, or exited before it was stopped.
    """
    chosen = messages[: spec.messages]
    sampled = sample_positions(chosen)
    run_log = work / f"{spec.slug}.run.log"
    db = work / f"{spec.slug}.duckdb"
    load_before = load_average()
    with EmbeddedBroker(log_dir=work) as broker:
        broker.create_topics([t.value for t in (*InputTopic, *OutputTopic)], PARTITIONS)
        connection = reader_connection(broker.bootstrap_servers)
        command = [_cli(), "run", "--bootstrap", broker.bootstrap_servers]
        command += ["--db", str(db)] if spec.land else []
        env = flow_environment(broker.bootstrap_servers, spec.fetch_wait_ms)
        with run_log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            lander_log = db.with_name(db.name + ".land.log")
            marker = (lander_log, LANDER_READY) if spec.land else (run_log, RUN_READY)
            ready_s = wait_until_ready(marker, run_log, process)
            producer = PacedProducer(connection, chosen, spec.rate)
            probe = FreshnessProbe(
                db.with_name(db.name + ".snapshot"), sampled, [m.event_id for m in chosen], producer
            )
            reader = threading.Thread(target=probe.run, name="bench-freshness", daemon=True)
            producer.start()
            if spec.land:
                reader.start()
            drained = wait_for_drain(connection, OutputTopic.ALLOCATION_DECISIONS.value, producer)
            if spec.land:
                _wait_for_freshness(probe)
                probe.stop.set()
                reader.join()
            if process.poll() is not None:
                raise RuntimeError(f"allocflow run exited early:\n{_text(run_log)[-3000:]}")
        finally:
            exit_code = stop_process(process)
        decisions = read_decisions(connection, OutputTopic.ALLOCATION_DECISIONS.value)
    return {
        "name": spec.name,
        "rate_per_s": spec.rate,
        "duration_s": spec.duration_s,
        "fetch_wait_max_ms": spec.fetch_wait_ms,
        "lander": spec.land,
        "messages": len(chosen),
        "ready_wait_s": round(ready_s, 1),
        "producer": _producer_facts(producer, spec),
        "drained": drained,
        "exit_code": exit_code,
        "latency": summarise_latency(decisions, chosen, producer, spec),
        "merge_floor_ms": merge_floor(chosen, producer.produce_ms, _window(producer, spec)),
        "freshness": summarise_freshness(probe, producer, spec) if spec.land else None,
        "load_before": load_before,
        "load_after": load_average(),
    }


def _wait_for_freshness(probe: FreshnessProbe) -> None:
    deadline = time.monotonic() + FRESHNESS_WAIT_S
    while probe.pending() and time.monotonic() < deadline:
        time.sleep(READ_EVERY_S)
    time.sleep(2 * READ_EVERY_S)


def _cli() -> str:
    return str(Path(sys.executable).with_name("allocflow"))


def _producer_facts(producer: PacedProducer, spec: RunSpec) -> dict[str, Any]:
    seconds = (producer.finished_ms - producer.started_ms) / 1000
    return {
        "sent": producer.sent,
        "produce_s": round(seconds, 2),
        "achieved_rate_per_s": round(producer.sent / seconds) if seconds else None,
        "flush_s": round((producer.flushed_ms - producer.finished_ms) / 1000, 3),
        "undelivered": producer.undelivered,
        "offered_rate_per_s": spec.rate,
    }


def measure_backlog(messages: Sequence[Outgoing], work: Path) -> dict[str, Any]:
    """Produce ``messages`` unpaced, then time ``allocflow run --no-tail`` over that backlog.

    Raises:
        RuntimeError: The run failed or logged no flow time.
    """
    log_path = work / "backlog.run.log"
    with EmbeddedBroker(log_dir=work) as broker:
        broker.create_topics([t.value for t in (*InputTopic, *OutputTopic)], PARTITIONS)
        producer = PacedProducer(reader_connection(broker.bootstrap_servers), messages, UNPACED)
        producer.run()
        env = flow_environment(broker.bootstrap_servers, DEFAULT_FETCH_WAIT_MS)
        command = [_cli(), "run", "--bootstrap", broker.bootstrap_servers, "--no-tail"]
        with log_path.open("wb") as out:
            done = subprocess.run(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, check=False
            )
    match = FINISHED.search(_text(log_path))
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"the backlog run failed:\n{_text(log_path)[-3000:]}")
    seconds = float(match.group(1))
    return {
        "messages": len(messages),
        "flow_s": seconds,
        "events_per_s": round(len(messages) / seconds),
        "orders_share": round(_orders_share(messages), 4),
    }


def _orders_share(messages: Sequence[Outgoing]) -> float:
    return sum(1 for m in messages if m.topic == InputTopic.ORDERS.value) / max(1, len(messages))


# --- summaries ------------------------------------------------------------------------------


def _window(producer: PacedProducer, spec: RunSpec) -> tuple[int, int]:
    """Positions of the events whose latency counts: after warm-up, before the end."""
    first = int(WARMUP_EXCLUDED_S * spec.rate)
    last = max(first, producer.sent - int(END_EXCLUDED_S * spec.rate))
    return first, last


def percentiles_ms(values: Sequence[float]) -> dict[str, float] | None:
    """Return count, p50, p95, p99 and max of ``values`` (nearest rank), None if empty."""
    if not values:
        return None
    return {
        "count": len(values),
        "p50": quantile(values, 0.5),
        "p95": quantile(values, 0.95),
        "p99": quantile(values, 0.99),
        "max": max(values),
    }


def summarise_latency(
    decisions: list[tuple[str, int]],
    messages: Sequence[Outgoing],
    producer: PacedProducer,
    spec: RunSpec,
) -> dict[str, Any]:
    """Return latency percentiles, the timeline, throughput and lag from the decisions."""
    position = {m.event_id: i for i, m in enumerate(messages)}
    matched = [(position[c], stamp) for c, stamp in decisions if c in position]
    first, last = _window(producer, spec)
    produce_ms = producer.produce_ms
    counted = [stamp - produce_ms[p] for p, stamp in matched if first <= p < last]
    end_ms = producer.finished_ms
    decided_by_end = max((p for p, stamp in matched if stamp <= end_ms), default=-1) + 1
    newest = max((stamp for _, stamp in matched), default=end_ms)
    seconds = (end_ms - producer.started_ms) / 1000
    return {
        "decisions": len(decisions),
        "unmatched_causes": len(decisions) - len(matched),
        "window_positions": [first, last],
        "ms": percentiles_ms(counted),
        "timeline": _timeline(matched, produce_ms, producer.started_ms),
        "flow_events_per_s_while_producing": round(decided_by_end / seconds) if seconds else None,
        "lag_at_end_events": producer.sent - decided_by_end,
        "drain_s": round((newest - end_ms) / 1000, 2),
    }


def _timeline(
    matched: list[tuple[int, int]], produce_ms: list[int], started_ms: int
) -> list[dict[str, Any]]:
    """Return p50/p99 latency per TIMELINE_S seconds of produce time."""
    buckets: dict[int, list[int]] = {}
    for p, stamp in matched:
        bucket = int((produce_ms[p] - started_ms) / 1000 // TIMELINE_S)
        buckets.setdefault(bucket, []).append(stamp - produce_ms[p])
    return [
        {
            "from_s": bucket * TIMELINE_S,
            "decisions": len(values),
            "p50_ms": quantile(values, 0.5),
            "p99_ms": quantile(values, 0.99),
        }
        for bucket, values in sorted(buckets.items())
    ]


def merge_floor(
    messages: Sequence[Outgoing], produce_ms: list[int], window: tuple[int, int]
) -> dict[str, float] | None:
    """Return percentiles of the aligned input's hold per event (see the module docstring)."""
    count = len(messages)
    times = np.asarray(produce_ms[:count], dtype=np.float64)
    event_micros = np.fromiter((m.event_micros for m in messages), np.int64, count)
    lanes = np.fromiter(
        (_lane_index(m) for m in messages),
        np.int64,
        count,
    )
    positions = np.arange(count)
    floor = np.zeros(count)
    for lane in np.unique(lanes):
        in_lane = np.flatnonzero(lanes == lane)
        before = np.searchsorted(in_lane, positions, side="left")
        after = np.searchsorted(in_lane, positions, side="right")
        has_previous = before > 0
        previous = in_lane[np.maximum(before - 1, 0)]
        blocked = has_previous & (lanes != lane) & (event_micros[previous] < event_micros)
        next_ms = np.where(
            after < in_lane.size, times[in_lane[np.minimum(after, in_lane.size - 1)]], _NEVER
        )
        release = np.minimum(next_ms, times[previous] + IDLE_S * 1000)
        floor = np.maximum(floor, np.where(blocked, release - times, 0.0))
    first, last = window
    return percentiles_ms(floor[first:last].tolist())


def _lane_index(message: Outgoing) -> int:
    rank = list(InputTopic).index(InputTopic(message.topic))
    return rank * PARTITIONS + partition_of(message.key)


def summarise_freshness(
    probe: FreshnessProbe, producer: PacedProducer, spec: RunSpec
) -> dict[str, Any]:
    """Return freshness percentiles (published and seen) of events and their decisions."""
    first, last = _window(producer, spec)
    counted = [p for p in probe.sampled if first <= p < last]
    produce_ms = producer.produce_ms

    def ages(seen: dict[int, tuple[int, int]], which: int) -> list[float]:
        return [(seen[p][which] - produce_ms[p]) / 1000 for p in counted if p in seen]

    intervals = [b - a for a, b in zip(probe.publications, probe.publications[1:], strict=False)]
    return {
        "sampled": len(counted),
        "event_never_seen": sum(1 for p in counted if p not in probe.event_seen),
        "event_published_s": percentiles_ms(ages(probe.event_seen, 0)),
        "event_seen_s": percentiles_ms(ages(probe.event_seen, 1)),
        "decision_events": sum(1 for p in counted if p in probe.decision_seen),
        "decision_published_s": percentiles_ms(ages(probe.decision_seen, 0)),
        "decision_seen_s": percentiles_ms(ages(probe.decision_seen, 1)),
        "publications": len(probe.publications),
        "publication_interval_s": percentiles_ms([i / 1000 for i in intervals]),
        "reader_errors": probe.errors[:5],
    }


# --- the benchmark ------------------------------------------------------------------------


def run_specs(
    rates: Sequence[int], duration_s: float, compare_rate: int, alone_rate: int
) -> list[RunSpec]:
    """Return the runs.

    Every rate and the compare rate at the low fetch wait, then the compare rate at
    the default fetch wait, then the alone rate without the lander.
    """
    low = LOW_FETCH_WAIT_MS
    specs = [
        RunSpec(f"{rate}/s, fetch {low} ms", rate, duration_s, low)
        for rate in sorted({compare_rate, *rates})
    ]
    default = DEFAULT_FETCH_WAIT_MS
    name = f"{compare_rate}/s, fetch {default} ms"
    specs.append(RunSpec(name, compare_rate, duration_s, default))
    name = f"{alone_rate}/s, fetch {low} ms, no lander"
    specs.append(RunSpec(name, alone_rate, duration_s, low, land=False))
    return specs


def benchmark(args: argparse.Namespace, code: dict[str, Any], work: Path) -> dict[str, Any]:
    """Prepare the stream, run every spec; return the results document."""
    specs = run_specs(args.rates, args.duration, args.compare_rate, args.alone_rate)
    needed = max(spec.messages for spec in specs)
    messages, orders = prepare_stream(needed, Path(tempfile.gettempdir()), code["import_root"])
    runs = []
    for spec in specs:
        log(f"{spec.name}: {spec.messages:,} messages at {spec.rate:,}/s")
        runs.append(measure_run(spec, messages, work))
        log(render_run(runs[-1]))
    backlog_messages = messages[: int(args.alone_rate * args.duration)]
    log(f"backlog: {len(backlog_messages):,} messages, allocflow run --no-tail")
    backlog = measure_backlog(backlog_messages, work)
    log(f"backlog: {backlog['events_per_s']:,} events/s")
    return {
        "benchmark": "latency",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "stream": {
            "orders": orders,
            "seed": SEED,
            "faults": "none",
            "partitions": PARTITIONS,
            "simulate": " ".join(["allocflow", *simulate_command(orders, Path("DIR"))[1:]]),
        },
        "settings": {
            "duration_s": args.duration,
            "rates": list(args.rates),
            "compare_rate": args.compare_rate,
            "alone_rate": args.alone_rate,
            "producer_linger_ms": int(PRODUCER_LINGER_MS),
            "warm_s": WARM_S,
            "warmup_excluded_s": WARMUP_EXCLUDED_S,
            "end_excluded_s": END_EXCLUDED_S,
            "quiet_s": QUIET_S,
            "drain_limit_s": DRAIN_LIMIT_S,
            "aligned_idle_s": IDLE_S,
            "lander_publish_every_s": 1.5,
            "freshness_samples": FRESHNESS_SAMPLES,
            "reader_every_s": READ_EVERY_S,
        },
        "machine": {
            **machine_facts(),
            "confluent_kafka": version("confluent-kafka"),
            "git_commit": output_of(["git", "-C", str(REPO_DIR), "rev-parse", "HEAD"]),
        },
        "code": code | {"child_import_root": child_import_root()},
        "runs": runs,
        "backlog": backlog,
    }


def render(results: dict[str, Any]) -> str:
    """Return the Markdown tables of every run."""
    latency_rows = [_latency_row(run) for run in results["runs"]]
    freshness_rows = [_freshness_row(run) for run in results["runs"] if run["lander"]]
    backlog = results["backlog"]
    return "\n".join(
        [
            "Latency: event produced → decision on allocation-decisions (Kafka timestamps), ms",
            "",
            table(
                [
                    "run",
                    "offered/s",
                    "fetch wait",
                    "decisions",
                    "p50",
                    "p95",
                    "p99",
                    "max",
                    "merge floor p50/p99",
                    "flow events/s",
                    "lag at end",
                    "drain s",
                ],
                latency_rows,
            ),
            "",
            "Freshness: event produced → visible in the dashboard snapshot, s "
            "(published / seen by a reader every 0.25 s)",
            "",
            table(
                [
                    "run",
                    "sampled",
                    "event p50",
                    "event p99",
                    "decision p50",
                    "decision p99",
                    "never seen",
                    "publish interval p50",
                ],
                freshness_rows,
            ),
            "",
            f"Backlog control: the first {backlog['messages']:,} messages "
            f"({backlog['orders_share']:.0%} orders), allocflow run --no-tail: "
            f"{backlog['events_per_s']:,} events/s ({backlog['flow_s']} s of flow time)",
        ]
    )


def render_run(run: dict[str, Any]) -> str:
    """Return one run's rows, for progress."""
    return f"{_latency_row(run)}\n{_freshness_row(run)}"


def _latency_row(run: dict[str, Any]) -> list[str]:
    latency, floor = run["latency"], run["merge_floor_ms"]
    ms = latency["ms"] or {}
    return [
        run["name"],
        f"{run['rate_per_s']:,}",
        f"{run['fetch_wait_max_ms']} ms",
        f"{ms.get('count', 0):,}",
        *(f"{ms[k]:,.0f}" if ms else "-" for k in ("p50", "p95", "p99", "max")),
        f"{floor['p50']:.0f} / {floor['p99']:.0f}" if floor else "-",
        f"{latency['flow_events_per_s_while_producing']:,}",
        f"{latency['lag_at_end_events']:,}",
        f"{latency['drain_s']:.1f}" + ("" if run["drained"] else " (not drained)"),
    ]


def _freshness_row(run: dict[str, Any]) -> list[str]:
    fresh = run["freshness"]
    if fresh is None:
        return [run["name"], *("-" for _ in range(7))]
    return [
        run["name"],
        f"{fresh['sampled']:,}",
        _both(fresh["event_published_s"], fresh["event_seen_s"], "p50"),
        _both(fresh["event_published_s"], fresh["event_seen_s"], "p99"),
        _both(fresh["decision_published_s"], fresh["decision_seen_s"], "p50"),
        _both(fresh["decision_published_s"], fresh["decision_seen_s"], "p99"),
        f"{fresh['event_never_seen']:,}",
        _one(fresh["publication_interval_s"], "p50"),
    ]


def _both(published: dict[str, float] | None, seen: dict[str, float] | None, key: str) -> str:
    if not published or not seen:
        return "-"
    return f"{published[key]:.2f} / {seen[key]:.2f}"


def _one(stats: dict[str, float] | None, key: str) -> str:
    return "-" if not stats else f"{stats[key]:.2f}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument(
        "--rates", type=_rates, default=RATES, help="offered events/s, e.g. 5000,10000"
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds of producing per run")
    parser.add_argument(
        "--compare-rate",
        type=int,
        default=COMPARE_RATE,
        help=f"rate of the run at the default fetch wait ({DEFAULT_FETCH_WAIT_MS} ms)",
    )
    parser.add_argument(
        "--alone-rate",
        type=int,
        default=ALONE_RATE,
        help="rate of the run without the lander (no --db)",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_DURATION_S:.0f} s per run, no file"
    )
    parser.add_argument("--working-tree", action="store_true", help="run the checkout, not HEAD")
    parser.add_argument("--output", type=Path, default=None, help=f"default {RESULTS_PATH}")
    parser.add_argument("--show", action="store_true", help="print the saved results' tables")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = QUICK_DURATION_S if args.quick else DURATION_S
    return args


def _rates(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or show saved results); print the tables; write the JSON."""
    args = parse_args(argv)
    if args.show:
        print(render(json.loads(RESULTS_PATH.read_text())))
        return 0
    load_before = load_average()
    with (
        code_under_test(args.working_tree) as code,
        tempfile.TemporaryDirectory(prefix="allocflow-latency-") as scratch,
    ):
        results = benchmark(args, code, Path(scratch))
    results["load_average_before"] = load_before
    results["load_average_after"] = load_average()
    print(render(results))
    output = args.output or (None if args.quick else RESULTS_PATH)
    if output is not None:
        output.write_text(json.dumps(results, indent=2) + "\n")
        log(f"results written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
