"""Parameters of the in-stream data-quality gates."""

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field


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
    allowed_lateness: timedelta = Field(
        default=timedelta(0),
        ge=timedelta(0),
        description="How far behind its feed's watermark (latest event time seen) an event "
        "may be before it is flagged late; 0 flags every out-of-order event.",
    )
    orphan_grace: timedelta = Field(
        default=timedelta(hours=1),
        ge=timedelta(0),
        description="How long after a shipment (carrier) event its order (shipment) may still "
        "arrive before the event is reported as an orphan.",
    )
    stale_feed_after: timedelta = Field(
        default=timedelta(hours=24),
        gt=timedelta(0),
        description="A feed with no event for this long, while others advance, is stale.",
    )
    stale_node_after: timedelta = Field(
        default=timedelta(hours=8),
        gt=timedelta(0),
        description="A warehouse (node) named by no event for this long is stale.",
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
