"""What the landed columns hold, and what becomes of a value outside (``docs/kpis.md``).

The lander makes one record's staged rows landable before they join a batch:

* **Times** land as naive UTC ``TIMESTAMP`` between :data:`EARLIEST` and
  :data:`LATEST`, the range every reader of the file holds (DuckDB, polars, Python).
  A time whose offset puts it outside once in UTC (``0001-01-01T00:00:00+05:00``)
  lands at the nearest end, which keeps every comparison with a time inside the
  range (on time or late, before or after) what it was; the record is flagged.
  The conversion is timedelta arithmetic, which cannot overflow.
* **Integers** land as ``BIGINT``. A record holding an integer outside
  ``[BIGINT_MIN, BIGINT_MAX]`` does not land at all — a quantity is never changed —
  and is quarantined instead. Sums of quantities (the aggregates, a shipment's short
  units over its events) are ``HUGEINT``: fewer than 2^64 such values cannot overflow it.

Example:
    >>> from datetime import timedelta, timezone
    >>> landed_time(datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5))))
    (datetime.datetime(1, 1, 1, 0, 0), True)
    >>> landed_time(datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))))
    (datetime.datetime(2026, 1, 1, 10, 0), False)
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

EARLIEST = datetime(1, 1, 1)
"""The earliest landed time (UTC)."""
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999_999)
"""The latest landed time (UTC)."""
BIGINT_MIN = -(2**63)
"""The smallest landed integer."""
BIGINT_MAX = 2**63 - 1
"""The largest landed integer."""

_EPOCH = datetime(1970, 1, 1)
_AWARE_EPOCH = _EPOCH.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ClampedTime:
    """A time that landed at an end of the landed range.

    Attributes:
        column: The staged column it went to.
        sent: The time as the record holds it (with its offset).
        landed: The UTC time that landed.
    """

    column: str
    sent: datetime
    landed: datetime

    def describe(self) -> str:
        """One phrase: the column, the time as sent, the time landed."""
        end = "earliest" if self.landed == EARLIEST else "latest"
        return (
            f"{self.column} {self.sent.isoformat()} landed as {self.landed} "
            f"(the {end} landed time, UTC)"
        )


class UnlandableValueError(ValueError):
    """A record holds a number no landed column can hold; it is quarantined, not changed."""

    def __init__(self, column: str, value: int) -> None:
        """Name the column and the value."""
        super().__init__(
            f"{column} {value} is outside the landed integer range "
            f"[{BIGINT_MIN}, {BIGINT_MAX}]; the record was not landed"
        )
        self.column = column
        self.value = value


def landed_time(moment: datetime) -> tuple[datetime, bool]:
    """A time as naive UTC within the landed range, and whether it had to be clamped.

    A naive ``moment`` is taken as UTC already.
    """
    since_epoch = moment - (_AWARE_EPOCH if moment.tzinfo is not None else _EPOCH)
    if since_epoch < EARLIEST - _EPOCH:
        return EARLIEST, True
    if since_epoch > LATEST - _EPOCH:
        return LATEST, True
    return _EPOCH + since_epoch, False


def make_landable(frames: dict[str, list[dict[str, Any]]]) -> list[ClampedTime]:
    """Make one record's staged rows landable, in place; return the times clamped.

    Every ``datetime`` becomes naive UTC within the range; every integer is checked.
    A time staged into several columns is reported once per column.

    Raises:
        UnlandableValueError: An integer (a quantity, a count, an offset) is outside
            ``BIGINT``; none of the record may land.
    """
    clamped: dict[str, ClampedTime] = {}
    for rows in frames.values():
        for row in rows:
            for column, value in row.items():
                if type(value) not in _ALWAYS_LANDABLE:
                    row[column] = _landable(column, value, clamped)
    return list(clamped.values())


_ALWAYS_LANDABLE = frozenset({str, float, bool, bytes, type(None)})


def _landable(column: str, value: Any, clamped: dict[str, ClampedTime]) -> Any:
    if isinstance(value, datetime):
        landed, was_clamped = landed_time(value)
        if was_clamped:
            clamped.setdefault(column, ClampedTime(column, value, landed))
        return landed
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not BIGINT_MIN <= value <= BIGINT_MAX:
            raise UnlandableValueError(column, value)
        return value
    if isinstance(value, list):
        return [_landable(column, item, clamped) for item in value]
    if isinstance(value, dict):
        return {key: _landable(f"{column}.{key}", item, clamped) for key, item in value.items()}
    return value
