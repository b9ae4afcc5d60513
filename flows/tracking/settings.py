"""Parameters of route-delay detection; every duration is in event time."""

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from allocflow.models.limits import Duration, PositiveDuration


class TrackingSettings(BaseModel):
    """How the route tracker judges shipments and carrier lanes.

    Validation errors name the offending field, e.g. ``stall_after``.

    Example:
        >>> TrackingSettings(stall_after=timedelta(hours=12)).prediction_quantile
        0.5
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    stall_after: PositiveDuration = Field(
        default=timedelta(hours=18),
        description="A dispatched shipment with no carrier scan for this long is STALLED.",
    )
    at_risk_margin: Duration = Field(
        default=timedelta(0),
        description="AT_RISK when the expected delivery (carrier ETA or prediction) is later "
        "than the promise by more than this.",
    )
    prediction_quantile: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="Quantile of the lane's recent transit times, among those longer than the "
        "shipment has travelled so far, used as its predicted transit.",
    )
    transit_window: PositiveDuration = Field(
        default=timedelta(hours=72),
        description="Deliveries (by delivery time) a lane's prediction and on-time rate use.",
    )
    min_transit_samples: int = Field(
        default=10,
        ge=1,
        le=100_000,
        description="Fewest recent deliveries on a lane before it predicts.",
    )
    min_lane_deliveries: int = Field(
        default=30,
        ge=1,
        le=100_000,
        description="Fewest deliveries in a lane's recent window (and in its baseline) "
        "before its on-time rate (and baseline) is judged for degradation.",
    )
    baseline_window: PositiveDuration = Field(
        default=timedelta(days=7),
        description="Deliveries before the transit window that form a lane's baseline on-time "
        "rate.",
    )
    on_time_threshold: float = Field(
        default=0.8,
        ge=0,
        le=1,
        description="LANE_DEGRADED when a lane's recent on-time rate is below this.",
    )
    degradation_margin: float = Field(
        default=0.15,
        gt=0,
        le=1,
        description="LANE_DEGRADED also when the recent on-time rate is this far below the "
        "lane's baseline.",
    )
    recovery_margin: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="A degraded lane recovers once its rate is this far above both limits.",
    )
    tick_every: PositiveDuration = Field(
        default=timedelta(minutes=15),
        description="How often (in event time) the clock reaches every lane, so deadlines "
        "fire on lanes with no events of their own.",
    )
    forget_after: PositiveDuration = Field(
        default=timedelta(days=14),
        description="A shipment neither delivered nor heard of this long after its promise "
        "is no longer tracked.",
    )
    shipment_memory: int = Field(
        default=1_000_000,
        ge=1,
        le=100_000_000,
        description="Shipments whose lane the router remembers (least recently seen first "
        "forgotten); their later events are no longer tracked.",
    )
