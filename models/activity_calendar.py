"""Expected-activity calendars: the weekly hours in which a source is expected to send events.

A feed or a warehouse that is quiet outside its active hours (overnight, at weekends)
is quiet as expected, not stale: the data-quality gate and the dashboard count a
source's silence only over its active hours. A calendar is written as text:

* ``always`` — active at every hour (the default);
* ``Mon-Fri 07:00-19:00 Europe/Berlin`` — one or more windows, then an IANA time zone
  (``UTC`` when left out);
* ``Mon-Fri 06:00-22:00, Sat 08:00-14:00 America/Chicago`` — windows separated by commas;
* ``Sun-Thu 22:00-06:00 UTC`` — a window that ends at or before its start runs past
  midnight into the next day (the days name the day it starts);
* ``daily 00:00-24:00 Asia/Tokyo`` — ``daily`` is every day; ``24:00`` is midnight at
  the end of the day.

Days are ``Mon`` … ``Sun`` (any case), a single day or a range (``Fri-Mon`` wraps
round the week). Hours are local wall-clock time in the zone, so a window follows
daylight saving time; the active time between two instants is measured in real
(UTC) time. Everything is computed from event times: no wall clock.

Example:
    >>> from datetime import UTC, datetime
    >>> berlin = ActivityCalendar.parse("mon-fri 07:00-19:00 Europe/Berlin")
    >>> str(berlin)
    'Mon-Fri 07:00-19:00 Europe/Berlin'
    >>> friday_evening = datetime(2026, 3, 6, 17, 0, tzinfo=UTC)  # 18:00 in Berlin
    >>> monday_morning = datetime(2026, 3, 9, 7, 0, tzinfo=UTC)  # 08:00 in Berlin
    >>> berlin.active_between(friday_evening, monday_morning)
    datetime.timedelta(seconds=7200)
    >>> berlin.after_active(friday_evening, timedelta(hours=2))
    datetime.datetime(2026, 3, 9, 7, 0, tzinfo=datetime.timezone.utc)
"""

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ALWAYS = "always"
"""The text of the calendar that is active at every hour."""
ANY_SOURCE = "*"
"""Key of the calendar of every source not named in a mapping of calendars."""
MAX_TEXT = 500
"""Longest calendar text accepted."""
HORIZON = timedelta(days=3660)
"""How far ahead of a moment a calendar is searched: a source whose silence cannot
reach its limit of active time within this horizon is never stale."""

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY_INDEX = {day.lower(): index for index, day in enumerate(_DAYS)}
_DAILY = "daily"
_MINUTES_PER_DAY = 24 * 60
_WINDOW = re.compile(
    r"^(?P<days>[A-Za-z]+(?:-[A-Za-z]+)?)\s+(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})"
    r"(?:\s+(?P<zone>\S+))?$"
)


@dataclass(frozen=True)
class Window:
    """Weekly active hours: the same local-time span on some days of the week.

    Attributes:
        days: Weekdays the window starts on (0 = Monday).
        start: Minutes after local midnight the window opens.
        end: Minutes after that same midnight it closes; more than ``start``, up to
            two days (past midnight when over 1440).
    """

    days: tuple[int, ...]
    start: int
    end: int

    def __str__(self) -> str:
        """Return the window as written, e.g. ``Mon-Fri 07:00-19:00``."""
        closes = self.end % _MINUTES_PER_DAY or self.end
        return f"{_days_text(self.days)} {_clock(self.start)}-{_clock(closes)}"


@dataclass(frozen=True)
class ActivityCalendar:
    """When a source is expected to be active; see the module docstring for the text form.

    Attributes:
        windows: The weekly windows; empty means always active.
        zone: IANA time zone of the windows' local times.
    """

    windows: tuple[Window, ...] = ()
    zone: str = "UTC"

    @classmethod
    def parse(cls, text: str) -> "ActivityCalendar":
        """Read a calendar from its text form.

        Raises:
            ValueError: Saying what is wrong, e.g. an unknown day, time or time zone.
        """
        if len(text) > MAX_TEXT:
            raise ValueError(f"a calendar is at most {MAX_TEXT} characters (got {len(text)})")
        stripped = text.strip()
        if stripped.lower() == ALWAYS:
            return cls()
        if not stripped:
            raise ValueError(f"empty calendar; write {ALWAYS!r} or e.g. 'Mon-Fri 07:00-19:00 UTC'")
        parts = [part.strip() for part in stripped.split(",")]
        windows: list[Window] = []
        zone = "UTC"
        for number, part in enumerate(parts, start=1):
            window, named_zone = _window(part)
            if named_zone is not None:
                if number != len(parts):
                    raise ValueError(f"the time zone goes after the last window, not in {part!r}")
                zone = _zone_name(named_zone)
            windows.append(window)
        return cls(tuple(windows), zone)

    @property
    def always(self) -> bool:
        """True when the source is expected to be active at every hour."""
        return not self.windows

    def __str__(self) -> str:
        """Return the calendar's text form (normalised), e.g. ``Mon-Fri 07:00-19:00 UTC``."""
        if self.always:
            return ALWAYS
        return ", ".join(str(window) for window in self.windows) + f" {self.zone}"

    def active_at(self, moment: datetime) -> bool:
        """Return whether ``moment`` (time-zone aware) falls in the active hours."""
        if self.always:
            return True
        for start, end in self._intervals(moment):
            if start > moment:
                return False
            if moment < end:
                return True
        return False

    def active_between(self, start: datetime, end: datetime) -> timedelta:
        """Return the active time in ``[start, end]`` (zero when ``end`` is not after ``start``).

        Counting stops at :data:`HORIZON` after ``start``.
        """
        if end <= start:
            return timedelta(0)
        if self.always:
            return end - start
        total = timedelta(0)
        for opens, closes in self._intervals(start):
            if opens >= end:
                break
            total += min(closes, end) - max(opens, start)
        return total

    def after_active(self, start: datetime, duration: timedelta) -> datetime | None:
        """Return the moment the active time since ``start`` reaches ``duration``.

        Returns:
            That moment, or None when it lies beyond :data:`HORIZON` after ``start``.
        """
        if self.always:
            return start + duration
        remaining = duration
        for opens, closes in self._intervals(start):
            begin = max(opens, start)
            if closes - begin >= remaining:
                return begin + remaining
            remaining -= closes - begin
        return None

    def _intervals(self, moment: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Yield the active intervals (UTC, merged, in order) that end after ``moment``.

        Only the windows opening within about :data:`HORIZON` after ``moment`` are searched.
        """
        zone = ZoneInfo(self.zone)
        first = moment.astimezone(zone).date() - timedelta(days=2)
        pending: tuple[datetime, datetime] | None = None
        for offset in range(HORIZON.days + 3):
            for opens, closes in self._day_intervals(first + timedelta(days=offset), zone):
                if pending is not None and opens <= pending[1]:
                    pending = (pending[0], max(pending[1], closes))
                    continue
                if pending is not None and pending[1] > moment:
                    yield pending
                pending = (opens, closes)
        if pending is not None and pending[1] > moment:
            yield pending

    def _day_intervals(self, day: date, zone: ZoneInfo) -> list[tuple[datetime, datetime]]:
        """The windows opening on local ``day``, in UTC, by opening time."""
        midnight = datetime.combine(day, time())
        found = [
            (_utc(midnight + timedelta(minutes=w.start), zone),
             _utc(midnight + timedelta(minutes=w.end), zone))
            for w in self.windows
            if day.weekday() in w.days
        ]  # fmt: skip
        return sorted(interval for interval in found if interval[1] > interval[0])


def calendar_of(calendars: Mapping[str, ActivityCalendar], name: str) -> ActivityCalendar:
    """Return the calendar of source ``name``: its own, else that of ``*``, else always.

    Example:
        >>> calendars = {"*": ActivityCalendar.parse("Mon-Sat 06:00-22:00")}
        >>> str(calendar_of(calendars, "DC-NJ")), str(calendar_of({}, "DC-NJ"))
        ('Mon-Sat 06:00-22:00 UTC', 'always')
    """
    return calendars.get(name) or calendars.get(ANY_SOURCE) or ActivityCalendar()


def _utc(local: datetime, zone: ZoneInfo) -> datetime:
    return local.replace(tzinfo=zone).astimezone(UTC)


def _window(text: str) -> tuple[Window, str | None]:
    match = _WINDOW.match(text)
    if match is None:
        raise ValueError(
            f"cannot read {text!r}: write DAYS HH:MM-HH:MM [TIME ZONE], "
            "e.g. 'Mon-Fri 07:00-19:00 Europe/Berlin', or 'always'"
        )
    start = _minutes(match["start"], allow_end_of_day=False)
    end = _minutes(match["end"], allow_end_of_day=True)
    if start == end:
        raise ValueError(f"{text!r} opens and closes at the same time; a whole day is 00:00-24:00")
    if end < start:
        end += _MINUTES_PER_DAY
    return Window(_day_set(match["days"]), start, end), match["zone"]


def _day_set(text: str) -> tuple[int, ...]:
    if text.lower() == _DAILY:
        return tuple(range(7))
    first, _, last = text.partition("-")
    start, stop = _day(first), _day(last or first)
    return tuple(sorted({(start + step) % 7 for step in range((stop - start) % 7 + 1)}))


def _day(text: str) -> int:
    index = _DAY_INDEX.get(text.lower())
    if index is None:
        raise ValueError(f"unknown day {text!r}; days are {', '.join(_DAYS)} or {_DAILY}")
    return index


def _minutes(text: str, *, allow_end_of_day: bool) -> int:
    hours, minutes = (int(part) for part in text.split(":"))
    if allow_end_of_day and (hours, minutes) == (24, 0):
        return _MINUTES_PER_DAY
    if hours > 23 or minutes > 59:
        raise ValueError(f"invalid time {text!r}; times are 00:00 to 23:59 (24:00 as an end)")
    return hours * 60 + minutes


def _zone_name(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin"
        ) from error
    return name


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _days_text(days: tuple[int, ...]) -> str:
    if len(days) == 7:
        return _DAILY
    first, last = days[0], days[-1]
    if len(days) == 1:
        return _DAYS[first]
    if days == tuple(range(first, last + 1)):
        return f"{_DAYS[first]}-{_DAYS[last]}"
    # a range wrapping round the week, e.g. Fri-Mon = (0, 4, 5, 6)
    gap = next(index for index in range(len(days) - 1) if days[index + 1] != days[index] + 1)
    return f"{_DAYS[days[gap + 1]]}-{_DAYS[days[gap]]}"
