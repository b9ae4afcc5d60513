"""What a finished run of the allocation flow did with every input message.

A file run is counted exactly from its own files: the input lines it read, the dead
letters and the data-quality alerts it wrote. A Kafka run (``--no-tail``) is counted
from the whole topics: the messages stored in the input topics, and every dead letter
and alert in their topics, so messages of earlier runs into the same topics count too.
The gate raises exactly one ``duplicate`` alert for every event it drops, so
``inputs = valid + dead-lettered + deduplicated``.

Example:
    >>> print(RunAccounting(5, {"MALFORMED_JSON": 1}, {"duplicate": 1, "late": 2}).report())
    5 inputs read: 3 valid, 1 dead-lettered, 1 deduplicated
    dead-lettered by reason: MALFORMED_JSON 1
    alerts by check: duplicate 1, late 2
"""

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

from allocflow.connectors.kafka_config import KafkaConnection
from allocflow.connectors.topic_counts import message_count, topic_values
from allocflow.models.dq_alerts import DqCheck
from allocflow.models.topics import InputTopic, OutputTopic


@dataclass(frozen=True)
class RunAccounting:
    """Where the input messages of a run went.

    Attributes:
        inputs: Messages read.
        dead_lettered: Dead letters by reason code.
        alerts: Data-quality alerts by check.
    """

    inputs: int
    dead_lettered: dict[str, int]
    alerts: dict[str, int]

    @property
    def deduplicated(self) -> int:
        """Events the gate dropped as duplicates (one ``duplicate`` alert each)."""
        return self.alerts.get(DqCheck.DUPLICATE.value, 0)

    @property
    def valid(self) -> int:
        """Events that passed the gate on to allocation."""
        return self.inputs - sum(self.dead_lettered.values()) - self.deduplicated

    def report(self) -> str:
        """Return the accounting as three readable lines."""
        return "\n".join(
            (
                f"{self.inputs} inputs read: {self.valid} valid, "
                f"{sum(self.dead_lettered.values())} dead-lettered, "
                f"{self.deduplicated} deduplicated",
                f"dead-lettered by reason: {_counts(self.dead_lettered)}",
                f"alerts by check: {_counts(self.alerts)}",
            )
        )


def account_run(inputs: tuple[Path, ...], output_dir: Path) -> RunAccounting:
    """Count what a finished file run did.

    Args:
        inputs: The input files the flow read.
        output_dir: Where it wrote ``dead-letter.jsonl`` and ``dq-alerts.jsonl``.

    Returns:
        The accounting.
    """
    return _accounting(
        sum(_line_count(path) for path in inputs),
        _records(output_dir / f"{OutputTopic.DEAD_LETTER.value}.jsonl"),
        _records(output_dir / f"{OutputTopic.DQ_ALERTS.value}.jsonl"),
    )


def account_kafka_run(
    connection: KafkaConnection, topics: Mapping[str, str], inputs: tuple[InputTopic, ...]
) -> RunAccounting:
    """Count what a finished Kafka run did, over the whole topics.

    Args:
        connection: The cluster.
        topics: Logical topic name → actual topic name.
        inputs: The input topics the flow read.

    Returns:
        The accounting of every message in the topics, earlier runs' included.

    Raises:
        TopicReadError: A topic could not be read to its end in time.
    """
    return _accounting(
        sum(message_count(connection, topics[topic.value]) for topic in inputs),
        _documents(topic_values(connection, topics[OutputTopic.DEAD_LETTER.value])),
        _documents(topic_values(connection, topics[OutputTopic.DQ_ALERTS.value])),
    )


def kafka_scope(topics: Mapping[str, str], inputs: tuple[InputTopic, ...]) -> str:
    """Say which topics a Kafka run's accounting counts, in one line."""
    counted = [topics[t.value] for t in (*inputs, OutputTopic.DEAD_LETTER, OutputTopic.DQ_ALERTS)]
    return (
        f"counting the whole topics {', '.join(counted)}: "
        "messages of earlier runs into the same topics count too"
    )


def input_files(input_dir: Path, topics: tuple[InputTopic, ...]) -> tuple[Path, ...]:
    """Return the ``<topic>.jsonl`` files of ``topics`` in ``input_dir``."""
    return tuple(input_dir / f"{topic.value}.jsonl" for topic in topics)


def _line_count(path: Path) -> int:
    """Count lines the way the file source reads them (a last line needs no newline)."""
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def _accounting(
    inputs: int, dead_letters: Iterable[dict[str, object]], alerts: Iterable[dict[str, object]]
) -> RunAccounting:
    by_reason = Counter(str(record["reason_code"]) for record in dead_letters)
    by_check = Counter(str(record["check"]) for record in alerts)
    return RunAccounting(
        inputs=inputs,
        dead_lettered=dict(sorted(by_reason.items())),
        alerts=dict(sorted(by_check.items())),
    )


def _records(path: Path) -> Iterator[dict[str, object]]:
    if not path.exists():
        return
    with path.open("rb") as handle:
        yield from _documents(handle)


def _documents(values: Iterable[bytes]) -> Iterator[dict[str, object]]:
    for value in values:
        yield orjson.loads(value)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {count}" for key, count in counts.items()) or "none"
