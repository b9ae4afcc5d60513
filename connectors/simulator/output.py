"""Where simulated messages go: JSON Lines files per topic, or Kafka topics."""

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol, Self

from allocflow.connectors.kafka_io import CheckedProducer, Delivery
from allocflow.connectors.simulator.records import SimRecord
from allocflow.models.topics import InputTopic

OnStored = Callable[[Delivery], None]
_FLUSH_TIMEOUT_S = 120.0


class RecordSink(Protocol):
    """Destination of simulated messages."""

    def write(self, record: SimRecord, on_stored: OnStored | None = None) -> None:
        """Send one message; ``on_stored`` learns its Kafka position, if any."""

    def close(self) -> None:
        """Make sure every message is stored, then release resources."""


class FileSink:
    """Writes ``<topic>.jsonl`` files, one message per line, in arrival order."""

    def __init__(self, out_dir: Path) -> None:
        """Create ``out_dir`` and open one file per input topic."""
        out_dir.mkdir(parents=True, exist_ok=True)
        self._files: dict[InputTopic, IO[bytes]] = {
            topic: (out_dir / f"{topic.value}.jsonl").open("wb") for topic in InputTopic
        }

    def write(self, record: SimRecord, on_stored: OnStored | None = None) -> None:  # noqa: ARG002
        """Append the message to its topic's file (a file has no broker position)."""
        if b"\n" in record.value:
            raise ValueError(f"message {record.event_id} contains a newline")
        self._files[record.topic].write(record.value + b"\n")

    def close(self) -> None:
        """Close every file."""
        for handle in self._files.values():
            handle.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class KafkaSink:
    """Produces to the input topics through a delivery-checked producer."""

    def __init__(self, producer: CheckedProducer, topics: Mapping[InputTopic, str]) -> None:
        """Send to ``topics`` (logical topic → configured name)."""
        self._producer = producer
        self._topics = topics

    def write(self, record: SimRecord, on_stored: OnStored | None = None) -> None:
        """Produce the message keyed by its subject key."""
        self._producer.produce(
            self._topics[record.topic], record.value, key=record.key, on_delivered=on_stored
        )

    def close(self) -> None:
        """Wait until the broker stored every message (raise if any was lost); disconnect."""
        self._producer.close(_FLUSH_TIMEOUT_S)


class Pacer:
    """Holds a stream to a target rate of messages per second (None: no limit)."""

    def __init__(self, rate: float | None) -> None:
        """Pace at ``rate`` messages per second."""
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be positive (got {rate})")
        self._interval = None if rate is None else 1.0 / rate
        self._started = time.monotonic()
        self._sent = 0

    def wait(self) -> None:
        """Sleep until the next message is due."""
        self._sent += 1
        if self._interval is None:
            return
        delay = self._started + self._sent * self._interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
