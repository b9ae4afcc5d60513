"""The ``route-alerts`` record: delay risks per shipment and degradation per lane."""

from enum import StrEnum
from typing import Literal

from pydantic import Field

from allocflow.models._internal.types import ContractModel, Identifier, Text, Timestamp
from allocflow.models.envelope import SCHEMA_VERSION
from allocflow.models.vocabulary import Severity


class RouteAlertKind(StrEnum):
    """What the route tracker detected."""

    NOT_DISPATCHED = "NOT_DISPATCHED"
    AT_RISK = "AT_RISK"
    STALLED = "STALLED"
    LATE = "LATE"
    RESOLVED = "RESOLVED"
    LANE_DEGRADED = "LANE_DEGRADED"


class RouteAlert(ContractModel):
    """A route-delay finding on a shipment, or a carrier lane's degradation."""

    record_type: Literal["route.alert"] = "route.alert"
    schema_version: Literal[1] = SCHEMA_VERSION
    alert_id: Identifier = Field(description="Deterministic id; consumers dedupe on it.")
    kind: RouteAlertKind = Field(description="What was detected.")
    severity: Severity = Field(description="Urgency.")
    carrier_id: Identifier = Field(description="Carrier.")
    lane: Identifier = Field(description="Lane: shipping node and destination region.")
    shipment_id: Identifier | None = Field(default=None, description="Shipment, if one.")
    order_id: Identifier | None = Field(default=None, description="Order, if known.")
    detected_at: Timestamp = Field(description="Event time of detection.")
    promised_delivery: Timestamp | None = Field(default=None, description="The promise.")
    expected_delivery: Timestamp | None = Field(
        default=None, description="Carrier ETA or predicted delivery at detection."
    )
    resolves_alert_id: Identifier | None = Field(
        default=None, description="For RESOLVED: the alert that cleared."
    )
    detail: Text = Field(description="What happened, for logistics.")
