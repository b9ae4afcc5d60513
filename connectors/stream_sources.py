"""allocflow's Bytewax inputs: a deterministic replay of JSON Lines files, and Kafka.

Both inputs emit :class:`RawMessage` — the undecoded bytes of one message with where
it came from — so a dataflow decodes, validates and dead-letters the same way
whichever input feeds it. Bytewax stays behind this module and
:mod:`allocflow.connectors.stream_sinks`.

Example:
    ::

        flow = Dataflow("replay")
        raw = op.input("files", flow, MergedFileSource({"orders": Path("orders.jsonl")}))

        kafka = kafka_source(flow, "kafka", connection, {"orders": "orders-prod"})
        decoded = op.flat_map_batch("decode", kafka.messages, decode_batch)
        op.inspect("count_errors", kafka.errors, count_error)  # already logged
"""

import heapq
import logging
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from itertools import islice
from pathlib import Path

import bytewax.operators as op
import orjson
from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE

from allocflow.connectors.event_time_screen import EventTimeScreen, Screened
from allocflow.connectors.input_stop import input_stop_requested
from allocflow.connectors.kafka_config import KafkaConnection
from allocflow.models.codec import UTF8_BOM
from allocflow.models.event_time import EventTimeRange

_LOG = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 1000
KAFKA_SEQUENCE = -1
"""The ``sequence`` of a message read from Kafka, which has no global order."""

_MERGED_PARTITION = "merged"
_BEGINNING_OF_TIME = datetime.min.replace(tzinfo=UTC)
_BYTEWAX_CONSUMER_KEYS = frozenset({"group.id", "enable.auto.commit", "enable.partition.eof"})
_KafkaItem = KafkaSourceMessage[bytes | None, bytes | None]
_KafkaErrorItem = KafkaError[bytes | None, bytes | None]


@dataclass(frozen=True)
class RawMessage:
    """One input message, undecoded, with its origin.

    Attributes:
        topic: The logical input topic (e.g. ``"orders"``), whatever the actual
            topic or file is called.
        partition: Kafka partition; None for a file.
        offset: Kafka offset, or the 0-based line index in a file.
        key: Kafka message key; None for a file (lines carry no key).
        value: The message bytes, exactly as stored (a file line without its newline;
            a Kafka tombstone becomes ``b""``).
        timestamp_ms: Kafka message timestamp in epoch milliseconds; None for a file or
            when the broker has none.
        sequence: Position in the deterministic merge of :class:`MergedFileSource`
            (0, 1, 2, …); ``KAFKA_SEQUENCE`` (-1) for Kafka.
        time_problem: Why the input's event-time screen quarantined the message
            (:mod:`allocflow.connectors.event_time_screen`): the dataflow dead-letters
            it as ``EVENT_TIME_OUT_OF_RANGE``. None when its time was accepted.
    """

    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes
    timestamp_ms: int | None
    sequence: int
    time_problem: str | None = None


@dataclass(frozen=True)
class SourceError:
    """An error the Kafka consumer reported for a partition.

    Attributes:
        topic: The logical input topic, or the actual topic name if it maps to none.
        partition: Kafka partition, if the error names one.
        offset: Kafka offset, if the error names one.
        code: librdkafka error code.
        name: librdkafka error name, e.g. ``UNKNOWN_TOPIC_OR_PART``.
        reason: The client's error text.
    """

    topic: str
    partition: int | None
    offset: int | None
    code: int
    name: str
    reason: str


@dataclass(frozen=True)
class KafkaStreams:
    """The two streams of :func:`kafka_source`.

    Attributes:
        messages: Every message read, in partition order within each partition.
        errors: Every consumer error, already logged; count or alert on it.
    """

    messages: Stream[RawMessage]
    errors: Stream[SourceError]


# --- deterministic file replay ---------------------------------------------------------

_MergeItem = tuple[datetime, int, int, bytes, str | None]
"""(merge time, file rank, line index, line bytes, time problem); tuples order by the
first three, which are unique."""


class MergedFileSource(FixedPartitionedSource[RawMessage, int]):
    """Replays JSON Lines files as one stream, merged in event-time order, repeatably.

    Each file holds one logical topic, one message per line, in arrival order. The
    lines of all files are merged on ``(merge time, file rank, line index)``, where
    the file rank is the file's position in ``files`` and the merge time of a line
    is the latest ``event_time`` read in its file up to and including that line.

    Why the running maximum and not the line's own ``event_time``: the merge streams
    the files (``heapq.merge`` over one reader per file), and a k-way merge is only
    correct when every input is sorted by the merge key. Arrival order is event-time
    order except for deliberately late messages, whose ``event_time`` is older than
    their neighbours'. The running maximum is nondecreasing in every file, so the
    merge is valid, every file keeps its own order, and a late message comes out
    beside the neighbours it arrived with — as it would arrive from Kafka. A line
    whose ``event_time`` cannot be read (malformed JSON, a missing, naive or
    unparseable timestamp) takes the same running maximum (the beginning of time
    before any readable line), so it also stays next to its neighbours.

    Every file is screened (:class:`~allocflow.connectors.event_time_screen.EventTimeScreen`
    with ``event_times``): a line whose ``event_time`` is out of the accepted range, or
    jumps more than the skew ahead of its file alone, never moves the running maximum;
    it comes out beside its neighbours with ``time_problem`` set, to be dead-lettered.

    The source has one partition. Its snapshot is the next sequence number; a
    resumed run re-reads the files and skips that many merged lines, so the files
    must not change between runs.

    Args:
        files: Logical topic → JSON Lines path; the order sets the file rank.
        batch_size: Most messages emitted per batch.
        event_times: The event times accepted into the merge.
    """

    def __init__(
        self,
        files: Mapping[str, Path],
        batch_size: int = DEFAULT_BATCH_SIZE,
        event_times: EventTimeRange | None = None,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive (got {batch_size})")
        self._files = tuple((topic, Path(path)) for topic, path in files.items())
        self._batch_size = batch_size
        self._event_times = event_times or EventTimeRange()

    def list_parts(self) -> list[str]:
        """Return the single partition; every worker can read the files."""
        return [_MERGED_PARTITION]

    def build_part(
        self,
        _step_id: str,
        for_part: str,
        resume_state: int | None,
    ) -> "MergedFilePartition":
        """Open the files and skip the ``resume_state`` lines already emitted."""
        if for_part != _MERGED_PARTITION:
            raise ValueError(f"unknown partition {for_part!r} of a merged file source")
        return MergedFilePartition(
            self._files, self._batch_size, resume_state or 0, self._event_times
        )


class MergedFilePartition(StatefulSourcePartition[RawMessage, int]):
    """The single partition of :class:`MergedFileSource`.

    Args:
        files: (logical topic, path) pairs in rank order.
        batch_size: Most messages per batch.
        start: Sequence number of the first message to emit.
        event_times: The event times accepted into the merge.
    """

    def __init__(
        self,
        files: tuple[tuple[str, Path], ...],
        batch_size: int,
        start: int,
        event_times: EventTimeRange | None = None,
    ) -> None:
        limits = event_times or EventTimeRange()
        self._topics = tuple(topic for topic, _ in files)
        self._readers = [_file_lines(path, rank, limits) for rank, (_, path) in enumerate(files)]
        self._merged: Iterator[_MergeItem] = heapq.merge(*self._readers)
        self._batch_size = batch_size
        self._next_sequence = start
        skipped = sum(1 for _ in islice(self._merged, start))
        if skipped < start:
            raise ValueError(f"cannot resume at message {start}: the files hold {skipped}")

    def next_batch(self) -> list[RawMessage]:
        """Return the next messages in merge order.

        Raises:
            StopIteration: Every line of every file was emitted, or a stop was
                requested (:mod:`allocflow.connectors.input_stop`).
        """
        if input_stop_requested():
            raise StopIteration
        batch = [self._message(item) for item in islice(self._merged, self._batch_size)]
        if not batch:
            raise StopIteration
        return batch

    def snapshot(self) -> int:
        """Return the sequence number of the next message."""
        return self._next_sequence

    def close(self) -> None:
        """Close the files."""
        for reader in self._readers:
            reader.close()

    def _message(self, item: _MergeItem) -> RawMessage:
        _, rank, index, line, problem = item
        sequence = self._next_sequence
        self._next_sequence += 1
        return RawMessage(self._topics[rank], None, index, None, line, None, sequence, problem)


def _file_lines(path: Path, rank: int, limits: EventTimeRange) -> Generator[_MergeItem, None, None]:
    """Yield the lines of one file with their merge keys (see :class:`MergedFileSource`)."""
    screen = EventTimeScreen[tuple[int, bytes]](limits)
    with path.open("rb") as handle:
        for index, raw_line in enumerate(handle):
            line = raw_line.removesuffix(b"\n")
            for screened in screen.push(event_time_of(line), (index, line)):
                yield _merge_item(screened, rank)
    for screened in screen.finish():
        yield _merge_item(screened, rank)


def _merge_item(screened: Screened[tuple[int, bytes]], rank: int) -> _MergeItem:
    index, line = screened.item
    merge_time = screened.merge_time or _BEGINNING_OF_TIME
    return merge_time, rank, index, line, screened.problem


def event_time_of(line: bytes) -> datetime | None:
    """Return the timezone-aware ``event_time`` of a JSON message, None if unreadable.

    Args:
        line: One message.

    Returns:
        The time, or None when the message is not a JSON object, or its
        ``event_time`` is missing, not ISO 8601 text, or has no UTC offset. A UTF-8
        byte order mark before the JSON is ignored, as the codec ignores it.
    """
    try:
        document = orjson.loads(line.removeprefix(UTF8_BOM))
    except orjson.JSONDecodeError:
        return None
    text = document.get("event_time") if isinstance(document, dict) else None
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.utcoffset() is not None else None


# --- Kafka ----------------------------------------------------------------------------


def kafka_source(
    flow: Dataflow,
    step_id: str,
    connection: KafkaConnection,
    topics: Mapping[str, str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    tail: bool = True,
) -> KafkaStreams:
    """Read Kafka topics into a dataflow, every partition assigned (no consumer group).

    Each Kafka partition becomes one Bytewax input partition that resumes from the
    offset in the recovery snapshot; without recovery a run starts at the beginning.
    Partitions are assigned, never subscribed, so no consumer group is joined (Tansu's
    group joins stall) and no offset is committed: recovery owns the offsets. The
    partition list is read once, at the start of a run.
    Consumer errors never crash the dataflow and are never dropped: each is logged
    with its topic and partition and emitted on ``errors``.

    Args:
        flow: The dataflow.
        step_id: Step id of the input.
        connection: The cluster; its consumer configuration (security and ``extra``
            included) is used, minus the keys Bytewax manages itself.
        topics: Logical topic → actual topic name.
        batch_size: Most messages consumed per partition per batch.
        tail: Keep waiting for new messages; False ends the input at the end of
            every partition.

    Returns:
        The message and error streams.

    Raises:
        ValueError: No topics, or two logical topics name the same actual topic.
    """
    logical_of = _logical_names(topics)
    return _kafka_input(
        step_id,
        flow,
        connection=connection,
        logical_of=logical_of,
        batch_size=batch_size,
        tail=tail,
    )


def _logical_names(topics: Mapping[str, str]) -> dict[str, str]:
    """Return actual topic name → logical topic name."""
    if not topics:
        raise ValueError("kafka_source needs at least one topic")
    logical_of = {actual: logical for logical, actual in topics.items()}
    if len(logical_of) != len(topics):
        raise ValueError(f"two logical topics read the same Kafka topic: {dict(topics)}")
    return logical_of


@operator
def _kafka_input(
    step_id: str,  # noqa: ARG001
    flow: Dataflow,
    *,
    connection: KafkaConnection,
    logical_of: dict[str, str],
    batch_size: int,
    tail: bool,
) -> KafkaStreams:
    """Wrap Bytewax's Kafka input; see :func:`kafka_source`.

    Bytewax's ``@operator`` needs the ``step_id`` parameter: it nests the steps
    inside under it.
    """
    config = {
        key: value
        for key, value in connection.consumer_config("allocflow-bytewax").items()
        if key not in _BYTEWAX_CONSUMER_KEYS
    }
    read = kop.input(
        "kafka",
        flow,
        brokers=connection.bootstrap_servers.split(","),
        topics=list(logical_of),
        tail=tail,
        add_config=config,
        batch_size=batch_size,
    )
    messages = op.map("messages", read.oks, partial(raw_message_of, logical_of))
    errors = op.map("errors", read.errs, partial(source_error_of, logical_of))
    op.inspect("log_errors", errors, _log_error)
    return KafkaStreams(messages, errors)


def raw_message_of(logical_of: Mapping[str, str], message: _KafkaItem) -> RawMessage:
    """Return the :class:`RawMessage` of a message Bytewax read from Kafka.

    Args:
        logical_of: Actual topic name → logical topic name.
        message: The message.
    """
    timestamp_type, timestamp = message.timestamp or (TIMESTAMP_NOT_AVAILABLE, 0)
    actual = message.topic or ""
    return RawMessage(
        topic=logical_of.get(actual, actual),
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value or b"",
        timestamp_ms=None if timestamp_type == TIMESTAMP_NOT_AVAILABLE else timestamp,
        sequence=KAFKA_SEQUENCE,
    )


def source_error_of(logical_of: Mapping[str, str], error: _KafkaErrorItem) -> SourceError:
    """Return the :class:`SourceError` of a consumer error Bytewax reported.

    Args:
        logical_of: Actual topic name → logical topic name.
        error: The error with the message it came with.
    """
    actual = error.msg.topic or ""
    return SourceError(
        topic=logical_of.get(actual, actual),
        partition=error.msg.partition,
        offset=error.msg.offset,
        code=error.err.code(),
        name=error.err.name(),
        reason=error.err.str(),
    )


def _log_error(step_id: str, error: SourceError) -> None:
    _LOG.error(
        "%s: Kafka consumer error on topic %s partition %s offset %s: %s (%s)",
        step_id,
        error.topic,
        error.partition,
        error.offset,
        error.reason,
        error.name,
    )
