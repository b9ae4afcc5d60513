"""allocflow's Bytewax outputs: a delivery-checked Kafka sink and a resumable JSON Lines file.

Bytewax's own ``KafkaSink`` drops a message whose delivery fails; :class:`CheckedKafkaSink`
makes the dataflow fail instead, so recovery replays the epoch. :class:`JsonLinesSink`
writes each document exactly once even across a crash and resume.

Example:
    ::

        op.output("decisions_out", keyed_bytes, CheckedKafkaSink(connection, "decisions"))
        write_json_lines("decisions_file", documents, Path("out/decisions.jsonl"))
"""

import os
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
from allocflow.connectors.kafka_io import CheckedProducer

DEFAULT_FLUSH_TIMEOUT_S = 120.0
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
        flush_timeout_s: Seconds a batch may wait for its deliveries; keep it above
            ``message.timeout.ms`` so a failure is reported as such.
    """

    connection: KafkaConnection
    topic: str
    flush_timeout_s: float = DEFAULT_FLUSH_TIMEOUT_S

    def build(
        self,
        _step_id: str,
        _worker_index: int,
        _worker_count: int,
    ) -> "CheckedKafkaPartition":
        """Connect this worker's producer."""
        producer = CheckedProducer(self.connection)
        return CheckedKafkaPartition(producer, self.topic, self.flush_timeout_s)


class CheckedKafkaPartition(StatelessSinkPartition[KafkaItem]):
    """One worker's producer of a :class:`CheckedKafkaSink`.

    Args:
        producer: The producer; closed by :meth:`close`.
        topic: Topic name.
        flush_timeout_s: Seconds each batch may wait for its deliveries.
    """

    def __init__(self, producer: CheckedProducer, topic: str, flush_timeout_s: float) -> None:
        self._producer = producer
        self._topic = topic
        self._flush_timeout_s = flush_timeout_s

    def write_batch(self, items: list[KafkaItem]) -> None:
        """Produce the batch and wait until the broker has all of it.

        Raises:
            DeliveryError: A message failed delivery or was still undelivered after
                the flush timeout.
        """
        for key, value in items:
            self._producer.produce(self._topic, value, key=key)
        self._producer.flush(self._flush_timeout_s)

    def close(self) -> None:
        """Flush what is left (raising on a loss) and disconnect."""
        self._producer.close(self._flush_timeout_s)


@dataclass(frozen=True)
class JsonLinesSink(FixedPartitionedSink[bytes, int]):
    """Appends one JSON document per line to a file, exactly once across resumes.

    A single partition, so one worker in the cluster owns the file; the item keys are
    ignored (use :func:`write_json_lines` to write an unkeyed stream). Each batch is
    flushed and fsync'ed. The snapshot is the file length after the last batch; a
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
    """

    def __init__(self, path: Path, length: int) -> None:
        self._path = path
        self._file = _open_cut_to(path, length)
        self._length = length

    def write_batch(self, values: list[bytes]) -> None:
        """Append each document and a newline, then make the batch durable.

        Raises:
            ValueError: A document contains a newline (it would become two lines).
        """
        for value in values:
            if b"\n" in value:
                raise ValueError(f"a document for {self._path} contains a newline")
        data = b"".join(value + b"\n" for value in values)
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._length += len(data)

    def snapshot(self) -> int:
        """Return the length of the file written so far."""
        return self._length

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def _open_cut_to(path: Path, length: int) -> BinaryIO:
    """Open ``path`` for writing at ``length``, dropping what follows; create it if new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    handle = path.open("r+b")
    size = handle.seek(0, os.SEEK_END)
    if size < length:
        handle.close()
        raise ValueError(f"{path} has {size} bytes, fewer than the {length} already written")
    handle.truncate(length)
    handle.seek(length)
    return handle


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
