"""Ceiling, peer and end to end: raw consume + decode, a hand-written loop, allocflow.

One embedded broker (Tansu, 4 partitions per topic) holds one simulated backlog
(``allocflow simulate --orders N --seed 7 --faults none``, baseline scenario) in the
four input topics. Each repeat then measures, back to back on the same topics:

* ``consume``, ``orjson`` and ``decode`` (the **ceiling**): one confluent-kafka
  consumer, every partition assigned explicitly from the beginning (no consumer
  group: the embedded broker's group joins stall), ``consume(num_messages=…,
  timeout=…)`` in batches until every partition reports its end. ``consume`` does
  nothing with the values, ``orjson`` parses each with ``orjson.loads`` (a lower
  bound on any decoding), ``decode`` validates each with the package's decoder,
  ``decode_event(InputTopic(topic), value)``. No allocation logic.
* ``peer``: a hand-written single-process loop with the plain-Python rules and no
  Bytewax. It consumes and decodes the backlog as ``decode`` does, sorts it into the
  dataflow's merge order (the order ``AlignedKafkaSource`` releases a backlog in:
  ``(running maximum of event_time in the partition, topic rank, partition,
  offset)``), which is exact here because the whole input is read before anything
  is released, then applies the rules exactly as
  :func:`allocflow.flows.rules.reference.allocate_stream` does (route, one
  ``AllocationShard`` per shard, one ``OrderRollup`` per order) and produces every
  output with a confluent-kafka ``Producer`` (the package's producer settings) to
  fresh output topics: decisions and order statuses to ``allocation-decisions``,
  exceptions to ``allocation-exceptions``, keyed by order id, as the flow does. Every
  delivery is checked; the clock stops after the final ``flush``.
* ``allocflow``: ``allocflow run --no-tail`` as a subprocess, one worker, output
  topics pointed at fresh names. Its events/s is the input messages over the seconds
  of its ``allocation flow finished in X s`` log line (the dataflow alone, without
  interpreter start-up); the subprocess's wall time is recorded beside it. It does
  more than the peer: the quality gate, route tracking and the dead-letter, dq-alert
  and route-alert outputs.
* ``allocflow_db`` (end to end, 1 worker): ``allocflow run --no-tail --db PATH``, which
  starts ``allocflow land --db PATH --until-idle 5`` beside the one-worker flow and,
  once the flow has finished, waits for the lander to stop: it stops after 5 s without
  a new message on any topic. Events/s is the input messages over the subprocess's
  wall time (start to exit: flow, lander, both start-ups and the 5 s idle wait). The
  flow-only seconds (its ``allocation flow finished`` line) and the time of the last
  landed batch (``landing_status.landed_at``, before the idle wait) are recorded too.
* ``allocflow_2p`` (end to end, 2 processes): ``python -m bytewax.run
  "allocflow.flows.allocation:get_kafka_flow(tail=False)" -i 0`` and ``-i 1`` with two
  free local ports and ``-s 3600`` (one-hour epochs, as ``allocflow run`` uses without
  a recovery store), and ``allocflow land --db PATH --until-idle 5``, the lander
  ``allocflow run --db`` would start, all three started at once with the same
  ``ALLOCFLOW_*`` environment. Events/s is the input messages over the time until all
  three have exited; the flow-only time is until both flow processes have exited
  (interpreter start-up included).

Each allocflow mode writes to fresh output topics. Afterwards every run's output
topics are read back to their ends: the decision ids and exception record ids of
each allocflow mode are compared with the one-worker run's (and the peer's), and each
landed DuckDB file is checked: every topic landed to its end (``landing_offsets``
against the messages read back), one ``input_events`` row per input message, one
``allocation_decisions`` row per decision id on the decisions topic.

The consumers written here set ``fetch.wait.max.ms`` to 10; allocflow's aligned
input uses the package's consumer settings, ``fetch.wait.max.ms`` 100, with batches
of ``DEFAULT_BATCH_SIZE`` messages. Medians over the repeats are reported, and the
ratios of every mode to the ceiling (decode) and to the peer of those medians.

Usage::

    .venv/bin/python bench/ceiling_peer.py [--orders 77000] [--repeats 1]   # 1,002,932 events
    .venv/bin/python bench/ceiling_peer.py --quick   # 2,000 orders, 1 repeat, nothing written
    .venv/bin/python bench/ceiling_peer.py --show    # the saved results

Results go to ``bench/results/ceiling_peer.json`` (``--quick``: printed only). The
peer and the ceiling import allocflow, and ``allocflow run`` runs, from the checkout
as it is (not an export of ``HEAD``); the number of modified tracked files is recorded.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import duckdb
import orjson
from allocation import free_ports, load_average, output_of, table
from allocation import machine_facts as shared_machine_facts
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from allocflow.connectors.aligned_kafka import DEFAULT_BATCH_SIZE
from allocflow.connectors.broker import EmbeddedBroker
from allocflow.connectors.kafka_config import KafkaConnection
from allocflow.connectors.policy_file import default_policy
from allocflow.flows.allocation import ALLOCATION_INPUTS
from allocflow.flows.rules.reference import allocate_stream
from allocflow.flows.runtime import UNRECOVERABLE_EPOCH
from allocflow.models.allocation_exceptions import AllocationException
from allocflow.models.codec import decode_event
from allocflow.models.envelope import EventEnvelope
from allocflow.models.topics import InputTopic, OutputTopic

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_PATH = BENCH_DIR / "results" / "ceiling_peer.json"
SEED = 7
DEFAULT_ORDERS = 77_000
DEFAULT_REPEATS = 1
QUICK_ORDERS = 2_000
PARTITIONS = 4
CONSUME_BATCH = 10_000
CONSUME_TIMEOUT_S = 0.5
FETCH_WAIT_MAX_MS = "10"
POLL_EVERY = 1_000
RUN_TIMEOUT_S = 3600
FINISHED = re.compile(r"allocation flow finished in ([0-9.]+) s")
LANDED = re.compile(
    r"Landed ([0-9,]+) messages in ([0-9,]+) batches \(([0-9,]+) msg/s of landing time"
)
LANDER_IDLE_S = 5.0
TWO_PROCESS_FLOW = "allocflow.flows.allocation:get_kafka_flow(tail=False)"
CEILING_MODES = ("consume", "orjson", "decode")
END_TO_END_MODES = ("allocflow_db", "allocflow_2p")
FLOW_MODES = ("allocflow", *END_TO_END_MODES)
MODES = (*CEILING_MODES, "peer", *FLOW_MODES)
MODE_TITLES = {
    "consume": "ceiling: consume only",
    "orjson": "ceiling: consume + orjson.loads",
    "decode": "ceiling: consume + decode_event",
    "peer": "peer: hand-written loop (rules, produce)",
    "allocflow": "allocflow run --no-tail (1 worker)",
    "allocflow_db": "end to end: allocflow run --db (1 worker)",
    "allocflow_2p": "end to end: 2 processes + lander",
}
LANDED_ROW_COUNTS = {
    "input_events": "SELECT count(*) FROM input_events",
    "allocation_decisions": "SELECT count(*) FROM allocation_decisions",
    "exceptions": "SELECT count(*) FROM exceptions",
}
DECISION_RECORD = "allocation.decision"
TARGET_OVER_PEER = 0.7
TARGET_2P_EVENTS_PER_S = 100_000
INPUT_TOPIC_NAMES = tuple(topic.value for topic in ALLOCATION_INPUTS)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


# --- consuming ------------------------------------------------------------------------------


def consumer_config(connection: KafkaConnection) -> dict[str, str]:
    """Return the settings of the consumers written here: explicit assignment, fast fetches."""
    config = connection.consumer_config("bench-ceiling-peer")
    config["fetch.wait.max.ms"] = FETCH_WAIT_MAX_MS
    return config


def assignment(consumer: Consumer, topics: Sequence[str]) -> list[TopicPartition]:
    """Return every partition of ``topics``, from the beginning."""
    metadata = consumer.list_topics(timeout=10)
    return [
        TopicPartition(topic, partition, OFFSET_BEGINNING)
        for topic in topics
        for partition in sorted(metadata.topics[topic].partitions)
    ]


def consume_all(
    connection: KafkaConnection,
    handle: Callable[[Any], None],
    topics: Sequence[str] = INPUT_TOPIC_NAMES,
) -> int:
    """Consume every partition of ``topics`` to its end, calling ``handle`` on each message.

    Args:
        connection: The broker.
        handle: Called with each message.
        topics: The topics to read (default: the flow's input topics).

    Returns:
        The number of messages handled.

    Raises:
        RuntimeError: The consumer reported an error other than a partition's end.
    """
    consumer = Consumer(consumer_config(connection))
    try:
        partitions = assignment(consumer, topics)
        consumer.assign(partitions)
        open_partitions = {(tp.topic, tp.partition) for tp in partitions}
        handled = 0
        while open_partitions:
            for message in consumer.consume(num_messages=CONSUME_BATCH, timeout=CONSUME_TIMEOUT_S):
                error = message.error()
                if error is None:
                    handle(message)
                    handled += 1
                elif error.code() == KafkaError._PARTITION_EOF:
                    open_partitions.discard((message.topic(), message.partition()))
                else:
                    raise RuntimeError(f"consumer error: {error}")
        return handled
    finally:
        consumer.close()


def measure_ceiling(connection: KafkaConnection, mode: str) -> dict[str, Any]:
    """Consume the backlog once in ``mode`` (consume, orjson or decode); return the timing."""
    handlers: dict[str, Callable[[Any], None]] = {
        "consume": _ignore,
        "orjson": _parse,
        "decode": _decode,
    }
    started = time.perf_counter()
    messages = consume_all(connection, handlers[mode])
    seconds = time.perf_counter() - started
    return {"messages": messages, "seconds": round(seconds, 3), "events_per_s": messages / seconds}


def _ignore(message: Any) -> None:
    message.value()


def _parse(message: Any) -> None:
    orjson.loads(message.value())


def _decode(message: Any) -> None:
    decode_event(InputTopic(message.topic()), message.value())


# --- the peer -------------------------------------------------------------------------------


@dataclass
class MergeBuffer:
    """Decoded events with their merge keys, in the order the dataflow's input releases them.

    Attributes:
        running_max: Latest event time read per partition, in microseconds.
        keyed: ``(merge key, event)`` pairs.
    """

    running_max: dict[tuple[str, int], int] = field(default_factory=dict)
    keyed: list[tuple[tuple[int, int, int, int], EventEnvelope]] = field(default_factory=list)

    def add(self, message: Any) -> None:
        """Decode a consumed message and key it as ``AlignedKafkaSource`` does."""
        topic = InputTopic(message.topic())
        event = decode_event(topic, message.value())
        lane = (message.topic(), message.partition())
        micros = (event.event_time - _EPOCH) // _MICROSECOND
        latest = max(self.running_max.get(lane, micros), micros)
        self.running_max[lane] = latest
        rank = ALLOCATION_INPUTS.index(topic)
        self.keyed.append(((latest, rank, message.partition(), message.offset()), event))

    def events(self) -> Iterator[EventEnvelope]:
        """Yield the events in merge order."""
        self.keyed.sort(key=_merge_key)
        return (event for _key, event in self.keyed)


def _merge_key(item: tuple[tuple[int, int, int, int], EventEnvelope]) -> tuple[int, int, int, int]:
    return item[0]


@dataclass
class DeliveryCount:
    """Deliveries reported by the producer."""

    delivered: int = 0
    failed: int = 0
    first_error: str | None = None

    def report(self, error: KafkaError | None, _message: Any) -> None:
        """The producer's delivery callback."""
        if error is None:
            self.delivered += 1
            return
        self.failed += 1
        self.first_error = self.first_error or str(error)


def produce(producer: Producer, topic: str, record: Any, deliveries: DeliveryCount) -> None:
    """Produce one output record, serving delivery reports while the local queue is full."""
    value = record.__pydantic_serializer__.to_json(record)
    while True:
        try:
            producer.produce(topic, value, key=record.order_id, on_delivery=deliveries.report)
        except BufferError:
            producer.poll(0.05)
        else:
            return


def run_peer(connection: KafkaConnection, outputs: dict[OutputTopic, str]) -> dict[str, Any]:
    """Consume, merge, allocate and produce the backlog once; return the timings and counts.

    Raises:
        RuntimeError: A delivery failed or stayed undelivered after the flush.
    """
    policy = default_policy()
    buffer = MergeBuffer()
    deliveries = DeliveryCount()
    producer = Producer(connection.producer_config())
    started = time.perf_counter()
    messages = consume_all(connection, buffer.add)
    consumed = time.perf_counter()
    events = buffer.events()
    sorted_at = time.perf_counter()
    produced = {OutputTopic.ALLOCATION_DECISIONS: 0, OutputTopic.ALLOCATION_EXCEPTIONS: 0}
    for count, record in enumerate(allocate_stream(events, policy), 1):
        topic = _output_topic(record)
        produce(producer, outputs[topic], record, deliveries)
        produced[topic] += 1
        if count % POLL_EVERY == 0:
            producer.poll(0)
    allocated = time.perf_counter()
    left = producer.flush(60)
    finished = time.perf_counter()
    if left or deliveries.failed or deliveries.delivered != sum(produced.values()):
        failed, error = deliveries.failed, deliveries.first_error
        raise RuntimeError(f"{left} undelivered, {failed} failed: {error}")
    seconds = finished - started
    return {
        "messages": messages,
        "seconds": round(seconds, 3),
        "events_per_s": messages / seconds,
        "phases_s": {
            "consume_decode_key": round(consumed - started, 3),
            "sort": round(sorted_at - consumed, 3),
            "allocate_produce": round(allocated - sorted_at, 3),
            "final_flush": round(finished - allocated, 3),
        },
        "produced": {topic.value: count for topic, count in produced.items()},
    }


def _output_topic(record: Any) -> OutputTopic:
    if isinstance(record, AllocationException):
        return OutputTopic.ALLOCATION_EXCEPTIONS
    return OutputTopic.ALLOCATION_DECISIONS


# --- allocflow ------------------------------------------------------------------------------


def output_topics(run: str) -> dict[OutputTopic, str]:
    """Return fresh output topic names for one run."""
    return {topic: f"{run}-{topic.value}" for topic in OutputTopic}


def base_environment(bootstrap: str) -> dict[str, str]:
    """Return this process's environment without ALLOCFLOW_ settings, pointed at ``bootstrap``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ALLOCFLOW_")}
    return env | {"ALLOCFLOW_BOOTSTRAP_SERVERS": bootstrap}


def topic_environment(names: dict[OutputTopic, str]) -> dict[str, str]:
    """Return the ``ALLOCFLOW_TOPIC_*`` settings that point the outputs at ``names``."""
    return {f"ALLOCFLOW_TOPIC_{topic.name}": name for topic, name in names.items()}


def allocflow_cli() -> str:
    """Return the ``allocflow`` command of this virtual environment."""
    return str(Path(sys.executable).with_name("allocflow"))


def allocflow(args: list[str], env: dict[str, str], log: Path) -> None:
    """Run ``allocflow ARGS`` with its output in ``log``.

    Raises:
        RuntimeError: It exited non-zero (the message holds the log's tail).
    """
    command = [allocflow_cli(), *args]
    with log.open("wb") as out:
        code = subprocess.run(
            command,
            check=False,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=RUN_TIMEOUT_S,
        ).returncode
    if code != 0:
        raise RuntimeError(f"{' '.join(args)} exited {code}:\n{log.read_text()[-3000:]}")


@dataclass(frozen=True)
class ChildExit:
    """When one child process exited, and what it used.

    Attributes:
        seconds: From the start of the children to this one's exit.
        cpu_s: User plus system CPU seconds, its own children's included.

    Peak RSS is not kept: a child's ``ru_maxrss`` starts from this process's resident
    size when it forks, which the peer's decoded backlog has made larger than any flow's.
    """

    seconds: float
    cpu_s: float


def run_together(
    commands: dict[str, list[str]], env: dict[str, str], log_prefix: Path
) -> dict[str, ChildExit]:
    """Start ``commands`` at once and wait for every one; output in ``<prefix>-<name>.log``.

    Raises:
        RuntimeError: One exited non-zero (the others are then killed) or the run
            passed ``RUN_TIMEOUT_S``.
    """
    logs = {name: Path(f"{log_prefix}-{name}.log") for name in commands}
    started = time.perf_counter()
    processes = {}
    for name, command in commands.items():
        with logs[name].open("wb") as out:
            processes[name] = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT
            )
    exits: dict[str, ChildExit] = {}
    try:
        while len(exits) < len(processes):
            for name, process in processes.items():
                if name not in exits and (done := _reap(process, started)) is not None:
                    exits[name] = done
                    if process.returncode != 0:
                        tail = logs[name].read_text()[-3000:]
                        raise RuntimeError(f"{name} exited {process.returncode}:\n{tail}")
            if time.perf_counter() - started > RUN_TIMEOUT_S:
                raise RuntimeError(f"{list(commands)} still running after {RUN_TIMEOUT_S} s")
            time.sleep(0.01)
    finally:
        for process in processes.values():
            if process.returncode is None:
                process.kill()
                process.wait()
    return exits


def _reap(process: "subprocess.Popen[bytes]", started: float) -> ChildExit | None:
    """Return the exit of ``process`` if it has exited (and reap it), else None."""
    pid, status, usage = os.wait4(process.pid, os.WNOHANG)
    if not pid:
        return None
    process.returncode = os.waitstatus_to_exitcode(status)
    return ChildExit(
        seconds=round(time.perf_counter() - started, 3),
        cpu_s=round(usage.ru_utime + usage.ru_stime, 1),
    )


def flow_seconds(log: Path) -> float:
    """Return the seconds of the ``allocation flow finished in X s`` line of ``log``.

    Raises:
        RuntimeError: The log has no such line.
    """
    match = FINISHED.search(log.read_text())
    if match is None:
        raise RuntimeError(f"no 'allocation flow finished' line in {log}")
    return float(match.group(1))


def run_allocflow(env: dict[str, str], log_prefix: Path, messages: int) -> dict[str, Any]:
    """Run ``allocflow run --no-tail`` once; return its flow time and events/s."""
    done = run_together({"run": [allocflow_cli(), "run", "--no-tail"]}, env, log_prefix)["run"]
    seconds = flow_seconds(Path(f"{log_prefix}-run.log"))
    return {
        "messages": messages,
        "seconds": seconds,
        "wall_s": done.seconds,
        "cpu_s": done.cpu_s,
        "events_per_s": messages / seconds,
    }


# --- end to end: the flow and the lander ----------------------------------------------------


def run_allocflow_db(env: dict[str, str], db: Path, messages: int) -> dict[str, Any]:
    """Run ``allocflow run --no-tail --db DB`` (one worker, its lander beside it) once.

    The end-to-end time is the subprocess's: it exits once the flow has finished and
    its lander, stopped by ``--until-idle 5``, has landed everything.
    """
    log_prefix = db.with_suffix("")
    started_at = datetime.now(UTC)
    command = [allocflow_cli(), "run", "--no-tail", "--db", str(db)]
    done = run_together({"run": command}, env, log_prefix)["run"]
    seconds = flow_seconds(Path(f"{log_prefix}-run.log"))
    return {
        "messages": messages,
        "seconds": done.seconds,
        "events_per_s": messages / done.seconds,
        "flow_s": seconds,
        "flow_events_per_s": messages / seconds,
        "cpu_s": {"run": done.cpu_s},
        "lander": lander_report(db.with_name(db.name + ".land.log"), db, started_at),
    }


def run_two_processes(env: dict[str, str], db: Path, messages: int) -> dict[str, Any]:
    """Run the flow as two ``bytewax.run`` processes with ``allocflow land`` beside them.

    The three start together. The lander stops as ``allocflow run --no-tail --db``
    stops its own: ``--until-idle 5``. The processes use one-hour epochs, as
    ``allocflow run`` does without a recovery store.
    """
    log_prefix = db.with_suffix("")
    started_at = datetime.now(UTC)
    exits = run_together(two_process_commands(env, db), env, log_prefix)
    flow = max(exits["process0"].seconds, exits["process1"].seconds)
    end = max(done.seconds for done in exits.values())
    return {
        "messages": messages,
        "seconds": end,
        "events_per_s": messages / end,
        "flow_s": flow,
        "flow_events_per_s": messages / flow,
        "cpu_s": {name: done.cpu_s for name, done in exits.items()},
        "lander": lander_report(Path(f"{log_prefix}-lander.log"), db, started_at),
    }


def two_process_commands(env: dict[str, str], db: Path) -> dict[str, list[str]]:
    """Return the command lines of processes 0 and 1 (two fresh local ports) and the lander."""
    addresses = ";".join(f"127.0.0.1:{port}" for port in free_ports(2))
    epoch_s = str(int(UNRECOVERABLE_EPOCH.total_seconds()))
    flow = [sys.executable, "-m", "bytewax.run", TWO_PROCESS_FLOW, "-a", addresses, "-s", epoch_s]
    bootstrap = env["ALLOCFLOW_BOOTSTRAP_SERVERS"]
    return {
        "process0": [*flow, "-i", "0"],
        "process1": [*flow, "-i", "1"],
        "lander": [
            allocflow_cli(),
            "land",
            "--db",
            str(db),
            "--bootstrap",
            bootstrap,
            "--until-idle",
            str(LANDER_IDLE_S),
        ],
    }


def lander_report(log: Path, db: Path, started_at: datetime) -> dict[str, Any]:
    """Return what the lander says it landed, and what the DuckDB file holds.

    ``last_batch_s`` is the time from ``started_at`` to the last batch's
    ``landing_status.landed_at``: when the last message was in, before the lander's
    idle wait.
    """
    match = LANDED.search(log.read_text())
    if match is None:
        raise RuntimeError(f"no 'Landed N messages' line in {log}")
    with duckdb.connect(str(db), read_only=True) as con:
        landed_at = _scalar(con, "SELECT landed_at FROM landing_status WHERE id = 1")
        offsets = con.execute(
            "SELECT source, sum(next_offset) FROM landing_offsets GROUP BY source ORDER BY source"
        ).fetchall()
        return {
            "messages": int(match.group(1).replace(",", "")),
            "batches": int(match.group(2).replace(",", "")),
            "messages_per_landing_s": int(match.group(3).replace(",", "")),
            "last_batch_s": round((landed_at.replace(tzinfo=UTC) - started_at).total_seconds(), 3),
            "rows": {name: _scalar(con, query) for name, query in LANDED_ROW_COUNTS.items()},
            "offsets": {source: int(total) for source, total in offsets},
        }


def _scalar(con: duckdb.DuckDBPyConnection, query: str) -> Any:
    row = con.execute(query).fetchone()
    if row is None:
        raise RuntimeError(f"no row: {query}")
    return row[0]


@dataclass
class RunOutputs:
    """What one run wrote to its output topics, read back to the end.

    Attributes:
        messages: Messages per output topic, by logical name. Counted by reading:
            the embedded broker answers ListOffsets with the base offset of a
            partition's last record batch, not its end.
        decisions: Decision ids on the decisions topic.
        exception_records: Record ids on the exceptions topic.
    """

    messages: dict[str, int] = field(default_factory=dict)
    decisions: set[str] = field(default_factory=set)
    exception_records: set[str] = field(default_factory=set)

    def same_records(self, other: "RunOutputs") -> bool:
        """Whether both hold the same decisions and exception records."""
        return (self.decisions, self.exception_records) == (
            other.decisions,
            other.exception_records,
        )


def read_outputs(connection: KafkaConnection, names: dict[OutputTopic, str]) -> RunOutputs:
    """Read a run's output topics to their ends; return their counts and record ids."""
    logical = {name: topic.value for topic, name in names.items()}
    outputs = RunOutputs(messages=dict.fromkeys(logical.values(), 0))

    def collect(message: Any) -> None:
        outputs.messages[logical[message.topic()]] += 1
        document = orjson.loads(message.value())
        if document.get("record_type") == DECISION_RECORD:
            outputs.decisions.add(document["decision_id"])
        elif message.topic() == names[OutputTopic.ALLOCATION_EXCEPTIONS]:
            outputs.exception_records.add(document["record_id"])

    consume_all(connection, collect, list(names.values()))
    return outputs


# --- the experiment -------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    """The broker and the stream in it.

    Attributes:
        broker: The running broker.
        work: Scratch directory for logs.
        messages: Input messages in the four topics.
        per_topic: Input messages per topic.
    """

    broker: EmbeddedBroker
    work: Path
    messages: int
    per_topic: dict[str, int]

    @property
    def connection(self) -> KafkaConnection:
        """The broker's connection."""
        return self.broker.connection("bench-ceiling-peer")


def simulate(broker: EmbeddedBroker, work: Path, orders: int) -> Setup:
    """Produce the simulated backlog into the input topics; return the setup."""
    manifest = work / "manifest.json"
    args = ["simulate", "--orders", str(orders), "--seed", str(SEED), "--faults", "none"]
    args += ["--bootstrap", broker.bootstrap_servers, "--no-progress", "--manifest", str(manifest)]
    allocflow(args, base_environment(broker.bootstrap_servers), work / "simulate.log")
    document = json.loads(manifest.read_text())
    per_topic = {topic: entry["messages"] for topic, entry in document["topics"].items()}
    return Setup(broker, work, int(document["messages"]), per_topic)


def repeat_once(setup: Setup, repeat: int) -> dict[str, Any]:
    """Run every mode once, back to back; return their results with the output checks."""
    result: dict[str, Any] = {"repeat": repeat}
    for mode in CEILING_MODES:
        result[mode] = measure_ceiling(setup.connection, mode)
        _check_count(mode, result[mode]["messages"], setup.messages)
        _report_mode(repeat, mode, result[mode])
    topics = {mode: output_topics(f"{mode}{repeat}") for mode in ("peer", *FLOW_MODES)}
    fresh = [name for names in topics.values() for name in names.values()]
    setup.broker.create_topics(fresh, PARTITIONS)
    result["peer"] = run_peer(setup.connection, topics["peer"])
    _check_count("peer", result["peer"]["messages"], setup.messages)
    _report_mode(repeat, "peer", result["peer"])
    for mode in FLOW_MODES:
        result[mode] = run_flow_mode(setup, mode, topics[mode], repeat)
        _report_mode(repeat, mode, result[mode])
    check_outputs(setup, result, topics)
    return result


def run_flow_mode(
    setup: Setup, mode: str, topics: dict[OutputTopic, str], repeat: int
) -> dict[str, Any]:
    """Run one of the allocflow modes into ``topics``; return its timings."""
    env = base_environment(setup.broker.bootstrap_servers) | topic_environment(topics)
    scratch = setup.work / f"{mode}{repeat}"
    if mode == "allocflow":
        return run_allocflow(env, scratch, setup.messages)
    db = scratch.with_suffix(".duckdb")
    if mode == "allocflow_db":
        return run_allocflow_db(env, db, setup.messages)
    return run_two_processes(env, db, setup.messages)


def check_outputs(
    setup: Setup, result: dict[str, Any], topics: dict[str, dict[OutputTopic, str]]
) -> None:
    """Record each run's outputs and compare them; check what the landers landed.

    Every allocflow mode's decision ids and exception record ids are compared with
    the one-worker run's, its decision ids with the peer's (the flow's route tracking
    opens exceptions the peer does not). Each lander must have read every message
    of every topic (its offsets against the messages read back), landed one
    ``input_events`` row per input message and one ``allocation_decisions`` row per
    decision id on the decisions topic.
    """
    outputs = {mode: read_outputs(setup.connection, names) for mode, names in topics.items()}
    for mode, read in outputs.items():
        result[mode]["outputs"] = {
            "topic_messages": read.messages,
            "decisions": len(read.decisions),
            "exception_records": len(read.exception_records),
            "same_as_1_worker": read.same_records(outputs["allocflow"]),
            "decisions_same_as_peer": read.decisions == outputs["peer"].decisions,
        }
    for mode in END_TO_END_MODES:
        lander = result[mode]["lander"]
        lander["problems"] = landing_problems(setup, lander, topics[mode], outputs[mode])
        for problem in lander["problems"]:
            _progress(f"  {mode}: {problem}")
        if not result[mode]["outputs"]["same_as_1_worker"]:
            _progress(f"  {mode}: outputs differ from the 1-worker run's")


def landing_problems(
    setup: Setup,
    lander: dict[str, Any],
    names: dict[OutputTopic, str],
    outputs: RunOutputs,
) -> list[str]:
    """Return what a landed file lacks against the topics (empty when it is complete).

    Args:
        setup: The backlog (input topics and their sizes).
        lander: The lander's report (:func:`lander_report`).
        names: The run's output topic names.
        outputs: What the run's output topics hold.
    """
    expected = dict(setup.per_topic) | {
        names[OutputTopic(topic)]: size for topic, size in outputs.messages.items()
    }
    landed = lander["offsets"]
    problems = [
        f"{topic}: landed up to {landed.get(topic, 0)} of {size} messages"
        for topic, size in expected.items()
        if landed.get(topic, 0) != size
    ]
    rows = lander["rows"]
    if rows["input_events"] != setup.messages:
        problems.append(f"{rows['input_events']} input_events rows for {setup.messages} inputs")
    if rows["allocation_decisions"] != len(outputs.decisions):
        problems.append(
            f"{rows['allocation_decisions']} allocation_decisions rows "
            f"for {len(outputs.decisions)} decisions on the topic"
        )
    return problems


def _report_mode(repeat: int, mode: str, measured: dict[str, Any]) -> None:
    _progress(f"repeat {repeat}: {mode}: {measured['events_per_s']:,.0f} events/s")


def _check_count(mode: str, got: int, expected: int) -> None:
    if got != expected:
        raise RuntimeError(f"{mode} read {got} messages, the simulator sent {expected}")


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def summarize(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the median events/s of each mode and the ratios of the allocflow modes."""
    medians = {mode: _median(repeats, mode, "events_per_s") for mode in MODES}
    flow_only = {mode: _median(repeats, mode, "flow_events_per_s") for mode in END_TO_END_MODES}
    flow = medians["allocflow"]
    return {
        "median_events_per_s": {mode: round(value) for mode, value in medians.items()},
        "range_events_per_s": {
            mode: [
                round(min(r[mode]["events_per_s"] for r in repeats)),
                round(max(r[mode]["events_per_s"] for r in repeats)),
            ]
            for mode in MODES
        },
        "median_flow_only_events_per_s": {mode: round(value) for mode, value in flow_only.items()},
        "over_ceiling": {
            mode: round(medians[mode] / medians["decode"], 3) for mode in ("peer", *FLOW_MODES)
        },
        "over_peer": {mode: round(medians[mode] / medians["peer"], 3) for mode in FLOW_MODES},
        "flow_only_over_peer": {
            mode: round(value / medians["peer"], 3) for mode, value in flow_only.items()
        },
        "allocflow_over_ceiling": round(flow / medians["decode"], 3),
        "allocflow_over_orjson_ceiling": round(flow / medians["orjson"], 3),
        "allocflow_over_peer": round(flow / medians["peer"], 3),
        "peer_over_ceiling": round(medians["peer"] / medians["decode"], 3),
        "target_allocflow_over_peer": TARGET_OVER_PEER,
        "target_2p_events_per_s": TARGET_2P_EVENTS_PER_S,
        "outputs_same_as_1_worker": all(
            run[mode]["outputs"]["same_as_1_worker"] for run in repeats for mode in FLOW_MODES
        ),
        "landing_complete": all(
            not run[mode]["lander"]["problems"] for run in repeats for mode in END_TO_END_MODES
        ),
    }


def _median(repeats: list[dict[str, Any]], mode: str, key: str) -> float:
    return statistics.median(run[mode][key] for run in repeats)


def machine_facts() -> dict[str, Any]:
    """Return what the numbers ran on: the shared facts, the Kafka client, the code."""
    changed = output_of(["git", "-C", str(REPO_DIR), "status", "--porcelain", "-uno"]) or ""
    return {
        **shared_machine_facts(),
        "confluent_kafka": version("confluent-kafka"),
        "git_commit": output_of(["git", "-C", str(REPO_DIR), "rev-parse", "HEAD"]),
        "git_dirty_files": len(changed.splitlines()),
    }


def measure(orders: int, repeats: int) -> dict[str, Any]:
    """Run the whole experiment; return the results document."""
    load_before = load_average()
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="ceiling-peer-") as scratch:
        work = Path(scratch)
        with EmbeddedBroker(log_dir=work) as broker:
            broker.create_topics([topic.value for topic in InputTopic], PARTITIONS)
            setup = simulate(broker, work, orders)
            _progress(f"{setup.messages:,} input messages in {broker.bootstrap_servers}")
            runs = [repeat_once(setup, repeat) for repeat in range(1, repeats + 1)]
    return {
        "benchmark": "ceiling_peer",
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "stream": {
            "orders": orders,
            "seed": SEED,
            "faults": "none",
            "partitions": PARTITIONS,
            "messages": setup.messages,
            "per_topic": setup.per_topic,
        },
        "settings": {
            "bench_consumer_fetch_wait_max_ms": int(FETCH_WAIT_MAX_MS),
            "bench_consume_batch": CONSUME_BATCH,
            "allocflow_input_fetch_wait_max_ms": 100,
            "allocflow_input_batch": DEFAULT_BATCH_SIZE,
            "lander_until_idle_s": LANDER_IDLE_S,
            "two_process_snapshot_interval_s": int(UNRECOVERABLE_EPOCH.total_seconds()),
        },
        "machine": machine_facts(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "repeats": runs,
        "summary": summarize(runs),
    }


def render(result: dict[str, Any]) -> str:
    """Return the results: events/s per mode, then the end-to-end runs in detail."""
    summary = result["summary"]
    medians = summary["median_events_per_s"]
    rows = [
        [
            MODE_TITLES[mode],
            f"{medians[mode]:,}",
            f"{medians[mode] / medians['decode']:.3f}",
            f"{medians[mode] / medians['peer']:.2f}",
        ]
        for mode in MODES
    ]
    over_peer = summary["over_peer"]
    return "\n".join(
        [
            f"{result['stream']['messages']:,} input messages "
            f"({result['stream']['orders']:,} orders), {len(result['repeats'])} repeat(s), medians",
            "",
            table(["mode", "events/s", "x ceiling (decode)", "x peer"], rows),
            "",
            table(END_TO_END_HEADER, [row for run in result["repeats"] for row in _e2e_rows(run)]),
            "",
            f"targets: 2 processes end to end >= {TARGET_2P_EVENTS_PER_S:,} events/s "
            f"(measured {medians['allocflow_2p']:,}); >= {TARGET_OVER_PEER}x the peer "
            f"(1 worker {over_peer['allocflow']:.2f}x, with the lander "
            f"{over_peer['allocflow_db']:.2f}x, 2 processes {over_peer['allocflow_2p']:.2f}x)",
            f"outputs the same as the 1-worker run's in every mode: "
            f"{summary['outputs_same_as_1_worker']}; every lander complete: "
            f"{summary['landing_complete']}",
        ]
    )


END_TO_END_HEADER = [
    "repeat",
    "mode",
    "end to end s",
    "last batch landed s",
    "flow s",
    "flow-only events/s",
    "landed messages",
    "CPU s",
    "decisions",
    "same as 1 worker",
    "landing check",
]


def _e2e_rows(run: dict[str, Any]) -> list[list[str]]:
    rows = []
    for mode in END_TO_END_MODES:
        measured = run[mode]
        lander = measured["lander"]
        rows.append(
            [
                str(run["repeat"]),
                MODE_TITLES[mode],
                f"{measured['seconds']:.1f}",
                f"{lander['last_batch_s']:.1f}",
                f"{measured['flow_s']:.1f}",
                f"{measured['flow_events_per_s']:,.0f}",
                f"{lander['messages']:,}",
                " + ".join(f"{seconds:.0f}" for seconds in measured["cpu_s"].values()),
                f"{measured['outputs']['decisions']:,}",
                "yes" if measured["outputs"]["same_as_1_worker"] else "NO",
                "; ".join(lander["problems"]) or "complete",
            ]
        )
    return rows


def main() -> None:
    """Parse the arguments, measure, print the table and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=DEFAULT_ORDERS)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--quick", action="store_true", help="2,000 orders, 1 repeat, no file")
    parser.add_argument("--output", type=Path, default=None, help=f"default {RESULTS_PATH}")
    parser.add_argument("--show", action="store_true", help="print the saved results' table")
    args = parser.parse_args()
    if args.show:
        print(render(json.loads(RESULTS_PATH.read_text())))
        return
    orders, repeats = (QUICK_ORDERS, 1) if args.quick else (args.orders, args.repeats)
    result = measure(orders, repeats)
    print(render(result))
    output = args.output or (None if args.quick else RESULTS_PATH)
    if output is not None:
        output.write_text(json.dumps(result, indent=2) + "\n")
        print(f"results written to {output}")


if __name__ == "__main__":
    main()
