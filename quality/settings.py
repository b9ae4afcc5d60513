"""Parameters of the in-stream data-quality gates."""

from collections.abc import Mapping
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from allocflow.models.activity_calendar import ANY_SOURCE, ActivityCalendar, calendar_of
from allocflow.models.limits import Duration, PositiveDuration
from allocflow.models.topics import InputTopic

WEEKEND_SILENCE = timedelta(hours=72)
"""Default silence allowed on the ``orders`` feed: B2B customers do not order over a
weekend (Friday 17:00 to Monday 08:00 is 63 h), and an ERP has nothing to send then."""


class GateSettings(BaseModel):
    """How the data-quality gates judge the input feeds; every duration is in event time.

    Validation errors name the offending field, e.g. ``dedupe_window``.

    Example:
        >>> GateSettings(allowed_lateness=timedelta(minutes=5)).orphan_grace
        datetime.timedelta(seconds=3600)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    dedupe_window: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description="Event ids remembered per feed (about 170 bytes each); a redelivery "
        "within the last this many distinct ids of its feed is dropped as a duplicate.",
    )
    allowed_lateness: Duration = Field(
        default=timedelta(0),
        description="How far behind its feed's watermark (latest event time seen) an event "
        "may be before it is flagged late; 0 flags every out-of-order event.",
    )
    orphan_grace: Duration = Field(
        default=timedelta(hours=1),
        description="How long after a shipment (carrier) event its order (shipment) may still "
        "arrive before the event is reported as an orphan.",
    )
    stale_feed_after: PositiveDuration = Field(
        default=timedelta(hours=24),
        description="A feed with no event for this long, while others advance, is stale "
        "(feeds not in stale_feed_after_by_feed).",
    )
    stale_feed_after_by_feed: dict[str, PositiveDuration] = Field(
        default_factory=lambda: {InputTopic.ORDERS.value: WEEKEND_SILENCE},
        description="Silence allowed per feed (logical input topic), overriding "
        "stale_feed_after: order feeds are quiet over weekends, carrier feeds never.",
    )
    stale_node_after: PositiveDuration = Field(
        default=timedelta(hours=8),
        description="A warehouse (node) named by no event for this long is stale.",
    )
    active_hours_by_feed: dict[str, ActivityCalendar] = Field(
        default_factory=dict,
        description="Expected-activity calendar per feed (text form, e.g. 'Mon-Fri 07:00-19:00 "
        "Europe/Berlin'; '*' for every feed not named): silence counts only in active hours. "
        "A feed without one is always active.",
    )
    active_hours_by_node: dict[str, ActivityCalendar] = Field(
        default_factory=dict,
        description="Expected-activity calendar per node id ('*' for every node not named); "
        "a node without one is always active.",
    )
    entity_memory: int = Field(
        default=1_000_000,
        ge=1,
        le=100_000_000,
        description="Orders and shipments remembered (each, least recently seen evicted "
        "first) to recognise orphans and dispatch times.",
    )
    sample_chars: int = Field(
        default=500,
        ge=0,
        le=1999,
        description="Characters of the raw message kept in an alert's sample.",
    )

    @field_validator("stale_feed_after_by_feed")
    @classmethod
    def _known_feeds_positive_silences(cls, value: dict[str, timedelta]) -> dict[str, timedelta]:
        check_feed_silences(value)
        return value

    @field_validator("active_hours_by_feed", "active_hours_by_node", mode="before")
    @classmethod
    def _calendars_from_text(cls, value: object) -> object:
        return parse_calendars(value) if isinstance(value, Mapping) else value

    @field_validator("active_hours_by_feed")
    @classmethod
    def _calendars_of_known_feeds(
        cls, value: dict[str, ActivityCalendar]
    ) -> dict[str, ActivityCalendar]:
        check_calendar_feeds(value)
        return value

    def feed_calendar(self, feed: str) -> ActivityCalendar:
        """Return the hours in which ``feed`` is expected to send events.

        Example:
            >>> settings = GateSettings(active_hours_by_feed={"orders": "Mon-Fri 08:00-18:00"})
            >>> str(settings.feed_calendar("orders")), str(settings.feed_calendar("shipments"))
            ('Mon-Fri 08:00-18:00 UTC', 'always')
        """
        return calendar_of(self.active_hours_by_feed, feed)

    def node_calendar(self, node_id: str) -> ActivityCalendar:
        """Return the hours in which events naming ``node_id`` are expected."""
        return calendar_of(self.active_hours_by_node, node_id)

    def stale_after(self, feed: str) -> timedelta:
        """Return the silence after which ``feed`` is stale.

        Example:
            >>> GateSettings().stale_after("orders"), GateSettings().stale_after("shipments")
            (datetime.timedelta(days=3), datetime.timedelta(days=1))
        """
        return self.stale_feed_after_by_feed.get(feed, self.stale_feed_after)


def check_feed_silences(silences: Mapping[str, timedelta]) -> None:
    """Check that every feed named is an input feed and its silence is positive.

    Raises:
        ValueError: Naming the unknown feed, or the feed with a silence ≤ 0.
    """
    feeds = {topic.value for topic in InputTopic}
    for feed, silence in silences.items():
        if feed not in feeds:
            raise ValueError(f"unknown feed {feed!r}; feeds are {', '.join(sorted(feeds))}")
        if silence <= timedelta(0):
            raise ValueError(f"the silence allowed on {feed!r} must be positive")


def parse_calendars(texts: Mapping[str, object]) -> dict[str, ActivityCalendar]:
    """Read a mapping of source → calendar text (calendars are kept as they are).

    Raises:
        ValueError: Naming the source whose calendar cannot be read, and why.
    """
    calendars: dict[str, ActivityCalendar] = {}
    for name, text in texts.items():
        if isinstance(text, ActivityCalendar):
            calendars[str(name)] = text
            continue
        if not isinstance(text, str):
            raise ValueError(f"the calendar of {name!r} must be text such as 'Mon-Fri 07:00-19:00'")
        try:
            calendars[str(name)] = ActivityCalendar.parse(text)
        except ValueError as error:
            raise ValueError(f"{name!r}: {error}") from None
    return calendars


def check_calendar_feeds(calendars: Mapping[str, object]) -> None:
    """Check that every calendar is of an input feed or of ``*``.

    Raises:
        ValueError: Naming the unknown feed.
    """
    feeds = {topic.value for topic in InputTopic}
    for feed in calendars:
        if feed not in feeds and feed != ANY_SOURCE:
            raise ValueError(
                f"unknown feed {feed!r}; feeds are {', '.join(sorted(feeds))} or {ANY_SOURCE!r}"
            )
