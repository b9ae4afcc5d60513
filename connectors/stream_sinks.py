"""allocflow's Bytewax outputs: a delivery-checked Kafka sink and a resumable JSON Lines file.

Bytewax's own ``KafkaSink`` drops a message whose delivery fails; :class:`CheckedKafkaSink`
makes the dataflow fail instead, so recovery replays the epoch. :class:`JsonLinesSink`
writes each document exactly once even across a crash and resume.

Delivery while the broker is away:
    librdkafka keeps undelivered messages queued and retries them for
    ``message.timeout.ms`` (60 s in allocflow's producer configuration; raise it with
    ``ALLOCFLOW_KAFKA_EXTRA='{"message.timeout.ms": "300000"}'``). Each batch waits for
    its deliveries and logs every few seconds how many are still waiting; a broker
    back within that time loses nothing. A message that times out or is refused
    fails the batch with a :class:`~allocflow.connectors.kafka_io.DeliveryError`
    naming the topic and the reason, which stops the dataflow (``allocflow run``
    exits 1): never a silent drop.

    The sink's producers are not idempotent (:data:`SINK_PRODUCER_OVERRIDES`): a
    broker that lost its data (the embedded broker restarted) no longer knows the
    producer id, and librdkafka then retries an idempotent producer's messages
    until they time out. One request in flight per connection keeps each
    partition's order across retries; a retry may duplicate a message, which
    consumers already drop by its deterministic id (recovery replays epochs anyway).

Example:
    ::

        op.output("decisions_out", keyed_bytes, CheckedKafkaSink(connection, "decisions"))
        write_json_lines("decisions_file", documents, Path("out/decisions.jsonl"))
"""

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import bytewax.operators as op
from bytewax.dataflow import Stream, operator
from bytewax.outputs import (
    DynamicSink,
    FixedPartitionedSink,
    StatefulSinkPartition,
    StatelessSinkPartition,
)

from allocflow.connectors.kafka_config import KafkaConnection
from allocflow.connectors.kafka_health import LOG_EVERY_S
from allocflow.connectors.kafka_io import CheckedProducer, DeliveryError
from allocflow.connectors.step_failure import StepFailure, failing

_LOG = logging.getLogger(__name__)

FLUSH_MARGIN_S = 30.0
"""Seconds a batch waits for its deliveries beyond ``message.timeout.ms``, so that a
lost message is reported as a failed delivery, not as a flush that gave up."""
_LIBRDKAFKA_MESSAGE_TIMEOUT_MS = 300_000
_CLOSE_TIMEOUT_S = 5.0

SINK_PRODUCER_OVERRIDES = {
    "enable.idempotence": "false",
    "max.in.flight.requests.per.connection": "1",
}
"""librdkafka properties of the sink's producers, applied over the connection's."""
_FILE_PARTITION = "file"
_FILE_KEY = "jsonl"

KafkaItem = tuple[str | None, bytes]
"""(message key, message value) for :class:`CheckedKafkaSink`."""


@dataclass(frozen=True)
class CheckedKafkaSink(DynamicSink[KafkaItem]):
    """Produces ``(key, value)`` items to one topic and fails the dataflow on any loss.

    Every worker gets its own :class:`~allocflow.connectors.kafka_io.CheckedProducer`.
    Each batch is produced, then flushed: the batch ends only when the broker has every
    message, and a failed or timed-out delivery raises
    :class:`~allocflow.connectors.kafka_io.DeliveryError`, which stops the dataflow.
    Delivery is at-least-once: after a resume the last epoch is produced again.

    Attributes:
        connection: The cluster; its producer configuration is used (idempotent,
            ``acks=all``; ``extra`` may set e.g. ``message.timeout.ms``).
        topic: Topic name to produce to.
        flush_timeout_s: Seconds a batch may wait for its deliveries. Default: the
            producer's ``message.timeout.ms`` plus :data:`FLUSH_MARGIN_S`, so a loss
            is reported as a failed delivery with its reason.
    """

    connection: KafkaConnection
    topic: str
    flush_timeout_s: float | None = None

    def build(
        self,
        _step_id: str,
        _worker_index: int,
        _worker_count: int,
    ) -> "CheckedKafkaPartition":
        """Connect this worker's producer."""
        producer = CheckedProducer(self.connection, SINK_PRODUCER_OVERRIDES)
        flush_timeout_s = self.flush_timeout_s
        if flush_timeout_s is None:
            flush_timeout_s = message_timeout_s(self.connection) + FLUSH_MARGIN_S
        return CheckedKafkaPartition(
            producer, self.topic, flush_timeout_s, self.connection.bootstrap_servers
        )


def message_timeout_s(connection: KafkaConnection) -> float:
    """Return how long the producer retries a message before failing it, in seconds."""
    configured = connection.producer_config().get("message.timeout.ms")
    milliseconds = _LIBRDKAFKA_MESSAGE_TIMEOUT_MS if configured is None else int(configured)
    return milliseconds / 1000.0


class CheckedKafkaPartition(StatelessSinkPartition[KafkaItem]):
    """One worker's producer of a :class:`CheckedKafkaSink`.

    Args:
        producer: The producer; closed by :meth:`close`.
        topic: Topic name.
        flush_timeout_s: Seconds each batch may wait for its deliveries.
        bootstrap_servers: The cluster, for the log lines.
    """

    def __init__(
        self,
        producer: CheckedProducer,
        topic: str,
        flush_timeout_s: float,
        bootstrap_servers: str = "Kafka",
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._flush_timeout_s = flush_timeout_s
        self._servers = bootstrap_servers

    def write_batch(self, items: list[KafkaItem]) -> None:
        """Produce the batch and wait until the broker has all of it.

        Raises:
            DeliveryError: A message failed delivery or was still undelivered after
                the flush timeout.
        """
        for key, value in items:
            self._producer.produce(self._topic, value, key=key)
        self._wait_for_deliveries()

    def close(self) -> None:
        """Disconnect; log anything still undelivered.

        Every batch is flushed before :meth:`write_batch` returns, so something is
        left only when the dataflow is already failing (another sink raised); then
        the failure is logged, not raised, because Bytewax aborts the process on an
        exception while it shuts down.
        """
        try:
            self._producer.close(min(self._flush_timeout_s, _CLOSE_TIMEOUT_S))
        except DeliveryError as error:
            _LOG.error(
                "Kafka producer for topic %s closed with messages undelivered: %s",
                self._topic,
                error,
            )

    def _wait_for_deliveries(self) -> None:
        """Flush in slices, logging what is still queued, until all is delivered or lost.

        Raises:
            DeliveryError: A message failed, or the flush timeout passed.
        """
        started = time.monotonic()
        while True:
            left = self._flush_timeout_s - (time.monotonic() - started)
            try:
                self._producer.flush(max(min(LOG_EVERY_S, left), 0.0))
            except DeliveryError as error:
                if error.failures or left <= LOG_EVERY_S:
                    self._log_failure(error)
                    raise
                _LOG.warning(
                    "waiting for Kafka at %s to take %d message(s) for topic %s "
                    "(%.0f s so far); they fail after message.timeout.ms",
                    self._servers,
                    error.undelivered,
                    self._topic,
                    time.monotonic() - started,
                )
            else:
                return

    def _log_failure(self, error: DeliveryError) -> None:
        _LOG.error(
            "Kafka delivery to topic %s at %s failed, stopping the dataflow: %s",
            self._topic,
            self._servers,
            error,
        )


class OutputWriteError(StepFailure):
    """An output file could not be opened or written (a full disk, no write access)."""

    @classmethod
    def of(cls, path: Path, error: OSError, doing: str = "write") -> "OutputWriteError":
        """Return the one-line error: what failed, where, and what to do.

        Example:
            >>> print(OutputWriteError.of(Path("/out/dq-alerts.jsonl"), OSError(28, "No space left on device")))
            cannot write /out/dq-alerts.jsonl: No space left on device (errno 28); free space on (or fix write access to) /out, then run again (with --recovery-dir it resumes from the last snapshot, else it starts over)
        """  # noqa: E501
        reason = error.strerror or str(error)
        code = f" (errno {error.errno})" if error.errno else ""
        return cls(
            f"cannot {doing} {path}: {reason}{code}; free space on (or fix write access to) "
            f"{path.parent}, then run again (with --recovery-dir it resumes from the last "
            "snapshot, else it starts over)"
        )


@dataclass(frozen=True)
class JsonLinesSink(FixedPartitionedSink[bytes, int]):
    """Appends one JSON document per line to a file, exactly once across resumes.

    A single partition, so one worker in the cluster owns the file; the item keys are
    ignored (use :func:`write_json_lines` to write an unkeyed stream). Each batch is
    written (unbuffered) and fsync'ed. The snapshot is the file length after the last batch; a
    resumed run truncates the file to it before appending, so what the replayed epoch
    writes replaces what the crashed run wrote after that point. A fresh run (no
    snapshot) starts with an empty file.

    Attributes:
        path: The file; its parent directories are created.
    """

    path: Path

    def list_parts(self) -> list[str]:
        """Return the single partition."""
        return [_FILE_PARTITION]

    def part_fn(self, _item_key: str) -> int:
        """Route every item to the single partition."""
        return 0

    def build_part(
        self,
        _step_id: str,
        for_part: str,
        resume_state: int | None,
    ) -> "JsonLinesPartition":
        """Open the file, cut back to the snapshot length."""
        if for_part != _FILE_PARTITION:
            raise ValueError(f"unknown partition {for_part!r} of a JSON Lines sink")
        return JsonLinesPartition(self.path, resume_state or 0)


class JsonLinesPartition(StatefulSinkPartition[bytes, int]):
    """The open file of a :class:`JsonLinesSink`.

    Args:
        path: The file.
        length: Bytes to keep from an earlier run; the rest is cut off.

    Raises:
        ValueError: The file is shorter than ``length``: data the snapshot counts on
            is gone, and padding would corrupt the file.
        OutputWriteError: The file cannot be created or opened for writing.
    """

    def __init__(self, path: Path, length: int) -> None:
        self._path = path
        try:
            self._file = _open_cut_to(path, length)
        except OSError as error:
            raise failing(OutputWriteError.of(path, error, "open")) from error
        self._length = length

    def write_batch(self, values: list[bytes]) -> None:
        """Append each document and a newline, then make the batch durable.

        A batch that cannot be written (a full disk) is cut off again, so the file
        ends after the last whole batch, and the dataflow stops.

        Raises:
            ValueError: A document contains a newline (it would become two lines).
            OutputWriteError: The batch could not be written.
        """
        for value in values:
            if b"\n" in value:
                raise ValueError(f"a document for {self._path} contains a newline")
        data = b"".join(value + b"\n" for value in values)
        try:
            _write_all(self._file, data)
            os.fsync(self._file.fileno())
        except OSError as error:
            self._cut_back()
            raise failing(OutputWriteError.of(self._path, error)) from error
        self._length += len(data)

    def _cut_back(self) -> None:
        """Drop what a failed batch left after the last whole one, if the file allows it."""
        try:
            self._file.truncate(self._length)
        except OSError:
            _LOG.warning("could not cut %s back to its last whole batch", self._path)

    def snapshot(self) -> int:
        """Return the length of the file written so far."""
        return self._length

    def close(self) -> None:
        """Close the file; a failure is logged (Bytewax aborts on one while shutting down)."""
        try:
            self._file.close()
        except OSError as error:
            _LOG.error("closing %s failed: %s", self._path, error)


def _open_cut_to(path: Path, length: int) -> BinaryIO:
    """Open ``path`` for writing at ``length``, dropping what follows; create it if new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    handle = path.open("r+b", buffering=0)
    size = handle.seek(0, os.SEEK_END)
    if size < length:
        handle.close()
        raise ValueError(f"{path} has {size} bytes, fewer than the {length} already written")
    if size > length:
        handle.truncate(length)
    handle.seek(length)
    return handle


def _write_all(file: BinaryIO, data: bytes) -> None:
    """Write all of ``data`` to an unbuffered file (a raw write may take only part)."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        view = view[written:]


@operator
def write_json_lines(step_id: str, up: Stream[bytes], path: Path) -> None:  # noqa: ARG001
    """Write a stream of JSON documents to ``path`` through a :class:`JsonLinesSink`.

    Bytewax's ``@operator`` needs the ``step_id`` parameter: it nests the steps
    inside under it.

    Args:
        step_id: Step id of the output.
        up: One JSON document per item, without newlines.
        path: The file.
    """
    keyed = op.key_on("key", up, _file_key)
    op.output("write", keyed, JsonLinesSink(path))


def _file_key(_value: bytes) -> str:
    return _FILE_KEY
