"""What a file run of the allocation flow did with every input message.

Counted exactly from the run's own files: the input lines it read, the dead letters
and the data-quality alerts it wrote. The gate raises exactly one ``duplicate`` alert
for every event it drops, so ``inputs = valid + dead-lettered + deduplicated``.

Example:
    >>> print(RunAccounting(5, {"MALFORMED_JSON": 1}, {"duplicate": 1, "late": 2}).report())
    5 inputs read: 3 valid, 1 dead-lettered, 1 deduplicated
    dead-lettered by reason: MALFORMED_JSON 1
    alerts by check: duplicate 1, late 2
"""

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

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
    dead = Counter(
        str(record["reason_code"])
        for record in _records(output_dir / f"{OutputTopic.DEAD_LETTER.value}.jsonl")
    )
    alerts = Counter(
        str(record["check"])
        for record in _records(output_dir / f"{OutputTopic.DQ_ALERTS.value}.jsonl")
    )
    return RunAccounting(
        inputs=sum(_line_count(path) for path in inputs),
        dead_lettered=dict(sorted(dead.items())),
        alerts=dict(sorted(alerts.items())),
    )


def input_files(input_dir: Path, topics: tuple[InputTopic, ...]) -> tuple[Path, ...]:
    """Return the ``<topic>.jsonl`` files of ``topics`` in ``input_dir``."""
    return tuple(input_dir / f"{topic.value}.jsonl" for topic in topics)


def _line_count(path: Path) -> int:
    """Count lines the way the file source reads them (a last line needs no newline)."""
    with path.open("rb") as handle:
        return sum(1 for _ in handle)


def _records(path: Path) -> Iterator[dict[str, object]]:
    if not path.exists():
        return
    with path.open("rb") as handle:
        for line in handle:
            yield orjson.loads(line)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{key} {count}" for key, count in counts.items()) or "none"
