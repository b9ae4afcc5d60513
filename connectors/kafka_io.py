"""Kafka producing that never drops a message silently, and reading a topic back.

Example:
    ::

        producer = CheckedProducer(connection)
        producer.produce("orders", b'{"order_id": "O-1"}', key="O-1")
        producer.flush(timeout_s=30)  # raises DeliveryError if anything was lost
        records = read_topic(connection, "orders", expected=1, timeout_s=30)
"""

import logging
import time
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from allocflow.connectors.kafka_config import KafkaConnection

_LOG = logging.getLogger(__name__)

Key = str | bytes | None
Value = str | bytes | None
Headers = dict[str, str | bytes | None] | list[tuple[str, str | bytes | None]]

_FAILURES_SHOWN = 5
_QUEUE_FULL_WAIT_S = 0.1
_POLL_S = 0.2
_TRANSIENT = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT})


@dataclass(frozen=True)
class Delivery:
    """Where the broker stored a message.

    Attributes:
        topic: Topic name.
        partition: Partition number.
        offset: Offset within the partition.
        key: The message key.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None


@dataclass(frozen=True)
class DeliveryFailure:
    """A message the broker did not take.

    Attributes:
        topic: Topic name.
        key: The message key.
        error: The client's error text.
    """

    topic: str
    key: bytes | None
    error: str


class DeliveryError(RuntimeError):
    """Messages failed delivery or were still undelivered when a flush timed out.

    Attributes:
        failures: Every failed message since the last flush.
        undelivered: Messages still queued when the flush gave up.
    """

    def __init__(self, failures: Sequence[DeliveryFailure], undelivered: int) -> None:
        self.failures = tuple(failures)
        self.undelivered = undelivered
        super().__init__(_describe(self.failures, undelivered))


def _describe(failures: Sequence[DeliveryFailure], undelivered: int) -> str:
    parts = []
    if failures:
        shown = "; ".join(
            f"topic {failure.topic!r} key {failure.key!r}: {failure.error}"
            for failure in failures[:_FAILURES_SHOWN]
        )
        more = len(failures) - _FAILURES_SHOWN
        suffix = f"; and {more} more" if more > 0 else ""
        parts.append(f"{len(failures)} message(s) failed delivery ({shown}{suffix})")
    if undelivered:
        parts.append(f"{undelivered} message(s) still undelivered when the flush timed out")
    return ", ".join(parts)


class CheckedProducer:
    """A Kafka producer that records every failed delivery and raises it on flush.

    The stock clients (and Bytewax's ``KafkaSink``) drop a message that fails after
    ``message.timeout.ms`` without a word; this one makes :meth:`flush` raise
    :class:`DeliveryError` instead.

    Args:
        connection: The cluster; its ``producer_config()`` is used.
        overrides: librdkafka properties applied on top, e.g. ``message.timeout.ms``.
    """

    def __init__(
        self, connection: KafkaConnection, overrides: Mapping[str, str] | None = None
    ) -> None:
        config = connection.producer_config()
        config.update(overrides or {})
        self._producer = Producer(config)
        self._failures: list[DeliveryFailure] = []
        self._record_failures = self._callback(None)

    def produce(
        self,
        topic: str,
        value: Value,
        *,
        key: Key = None,
        headers: Headers | None = None,
        on_delivered: Callable[[Delivery], None] | None = None,
    ) -> None:
        """Queue one message; waits for room if the local queue is full.

        Args:
            topic: Topic name.
            value: Message value.
            key: Message key; it chooses the partition.
            headers: Message headers.
            on_delivered: Called with the partition and offset once the broker has the
                message (from :meth:`poll` or :meth:`flush`).
        """
        callback = self._record_failures if on_delivered is None else self._callback(on_delivered)
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers, on_delivery=callback)
            except BufferError:
                self._producer.poll(_QUEUE_FULL_WAIT_S)
            else:
                self._producer.poll(0)
                return

    def poll(self, timeout_s: float = 0.0) -> None:
        """Serve delivery reports, waiting up to ``timeout_s`` for one."""
        self._producer.poll(timeout_s)

    def flush(self, timeout_s: float) -> None:
        """Wait until every queued message is delivered.

        Args:
            timeout_s: Seconds to wait.

        Raises:
            DeliveryError: A message failed since the last flush, or some were still
                undelivered after ``timeout_s``. The failures are reported once.
        """
        undelivered = self._producer.flush(timeout_s)
        failures, self._failures = self._failures, []
        if failures or undelivered:
            raise DeliveryError(failures, undelivered)

    def close(self, timeout_s: float) -> None:
        """Flush like :meth:`flush` (raising the same errors), then release the client."""
        try:
            self.flush(timeout_s)
        finally:
            self._producer.close()

    def _callback(
        self, on_delivered: Callable[[Delivery], None] | None
    ) -> Callable[[KafkaError | None, Message], None]:
        def report(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                failure = DeliveryFailure(message.topic() or "", message.key(), error.str())
                self._failures.append(failure)
            elif on_delivered is not None:
                on_delivered(Delivery(*_position(message), message.key()))

        return report


@dataclass(frozen=True)
class Record:
    """A message read from a topic.

    Attributes:
        topic: Topic name.
        partition: Partition number.
        offset: Offset within the partition.
        key: Message key.
        value: Message value.
        timestamp_ms: Message timestamp (epoch milliseconds), None if the broker has none.
        headers: Message headers, in order.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


class TopicReadError(RuntimeError):
    """Reading a topic failed or did not finish in time.

    Attributes:
        received: How many records had been read.
    """

    def __init__(self, message: str, received: int) -> None:
        self.received = received
        super().__init__(message)


def read_topic(
    connection: KafkaConnection,
    topic: str,
    *,
    expected: int | None = None,
    idle_timeout_s: float = 2.0,
    timeout_s: float = 60.0,
) -> list[Record]:
    """Read a topic from the beginning of every partition; see :func:`iter_topic`.

    Returns:
        The records, in partition order per partition.
    """
    return list(
        iter_topic(
            connection, topic, expected=expected, idle_timeout_s=idle_timeout_s, timeout_s=timeout_s
        )
    )


def iter_topic(
    connection: KafkaConnection,
    topic: str,
    *,
    expected: int | None = None,
    idle_timeout_s: float | None = 2.0,
    timeout_s: float | None = 60.0,
) -> Generator[Record, None, None]:
    """Yield the records of every partition of a topic, from the beginning.

    Partitions are assigned explicitly (no consumer group), so this works on brokers
    whose group joins are slow. The read ends:

    * after ``expected`` records, when given (Tansu's watermarks lag, so a known
      count is the reliable end);
    * otherwise when every partition reported its end and nothing arrived for
      ``idle_timeout_s`` (None: never, follow the topic).

    Args:
        connection: The cluster.
        topic: Topic name.
        expected: Stop after this many records.
        idle_timeout_s: Quiet seconds at the end of every partition that end the read.
        timeout_s: Seconds the whole read may take (None: no limit).

    Yields:
        Records, in order within each partition.

    Raises:
        TopicReadError: The topic does not exist, the consumer failed, or the read
            did not end within ``timeout_s``; the error says how many were read.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    consumer = Consumer(connection.consumer_config(f"allocflow-reader-{uuid.uuid4().hex}"))
    try:
        partitions = _partitions(consumer, topic, timeout_s)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        progress = _Progress(set(partitions), idle_timeout_s)
        while not progress.done(expected):
            if deadline is not None and time.monotonic() > deadline:
                raise TopicReadError(
                    progress.timeout_message(topic, timeout_s, expected), progress.received
                )
            message = consumer.poll(_POLL_S)
            if message is not None and progress.take(message, topic):
                yield _record(message)
    finally:
        consumer.close()


class _Progress:
    """Counts records and tracks which partitions are at their end."""

    def __init__(self, partitions: set[int], idle_timeout_s: float | None) -> None:
        self.received = 0
        self._not_at_end = set(partitions)
        self._idle_timeout_s = idle_timeout_s
        self._last_activity = time.monotonic()

    def take(self, message: Message, topic: str) -> bool:
        """Account for a polled message; return whether it is a record to yield."""
        error = message.error()
        if error is None:
            self.received += 1
            self._not_at_end.add(_position(message)[1])
            self._last_activity = time.monotonic()
            return True
        if error.code() == KafkaError._PARTITION_EOF:
            self._not_at_end.discard(message.partition())
            return False
        if error.fatal() or not (error.retriable() or error.code() in _TRANSIENT):
            raise TopicReadError(f"reading {topic!r} failed: {error.str()}", self.received)
        _LOG.warning("reading %s: %s (the client retries)", topic, error.str())
        return False

    def done(self, expected: int | None) -> bool:
        """Return whether the read is complete."""
        if expected is not None:
            return self.received >= expected
        if self._idle_timeout_s is None or self._not_at_end:
            return False
        return time.monotonic() - self._last_activity >= self._idle_timeout_s

    def timeout_message(self, topic: str, timeout_s: float | None, expected: int | None) -> str:
        """Describe a read that ran out of time."""
        wanted = "" if expected is None else f" of {expected} expected"
        return (
            f"reading {topic!r} timed out after {timeout_s} s with {self.received}{wanted} records"
        )


def _partitions(consumer: Consumer, topic: str, timeout_s: float | None) -> list[int]:
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s or 30.0)
    except KafkaException as exception:
        raise TopicReadError(f"no metadata for topic {topic!r}: {exception}", 0) from exception
    described = metadata.topics.get(topic)
    if described is None or described.error is not None or not described.partitions:
        reason = "no partitions" if described is None else str(described.error or "no partitions")
        raise TopicReadError(f"topic {topic!r} is not readable: {reason}", 0)
    return sorted(described.partitions)


def _record(message: Message) -> Record:
    topic, partition, offset = _position(message)
    timestamp_type, timestamp = message.timestamp()
    return Record(
        topic=topic,
        partition=partition,
        offset=offset,
        key=message.key(),
        value=message.value(),
        timestamp_ms=None if timestamp_type == TIMESTAMP_NOT_AVAILABLE else timestamp,
        headers=_headers(message.headers()),
    )


def _position(message: Message) -> tuple[str, int, int]:
    """Return topic, partition and offset of a delivered or consumed message."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError(f"Kafka message without a position: {topic}/{partition}@{offset}")
    return topic, partition, offset


def _headers(headers: Headers | None) -> tuple[tuple[str, bytes | None], ...]:
    pairs = headers.items() if isinstance(headers, dict) else headers or []
    return tuple(
        (name, value.encode() if isinstance(value, str) else value) for name, value in pairs
    )
