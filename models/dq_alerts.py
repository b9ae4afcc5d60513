"""The ``dq-alerts`` record: a data-quality finding on an input feed."""

from enum import StrEnum
from typing import Literal

from pydantic import Field

from allocflow.models._internal.types import ContractModel, Identifier, Text, Timestamp
from allocflow.models.envelope import SCHEMA_VERSION
from allocflow.models.vocabulary import Severity


class DqCheck(StrEnum):
    """The data-quality check that fired."""

    SCHEMA = "schema"
    DUPLICATE = "duplicate"
    LATE = "late"
    ORPHAN = "orphan"
    IMPOSSIBLE_VALUE = "impossible_value"
    STALE_FEED = "stale_feed"
    EXPECTATION = "expectation"


class DqAlert(ContractModel):
    """A data-quality finding, for the integration team that owns the feed."""

    record_type: Literal["dq.alert"] = "dq.alert"
    schema_version: Literal[1] = SCHEMA_VERSION
    alert_id: Identifier = Field(description="Deterministic id; consumers dedupe on it.")
    check: DqCheck = Field(description="Check that fired.")
    severity: Severity = Field(description="Urgency.")
    feed: Identifier = Field(description="Input topic (feed) the finding is about.")
    event_id: Identifier | None = Field(default=None, description="Offending event, if known.")
    entity: dict[str, str] = Field(
        default_factory=dict, description="Keys of the affected entity (order_id, sku, …)."
    )
    detected_at: Timestamp = Field(description="Event time of detection.")
    detail: Text = Field(description="What is wrong.")
    sample: Text | None = Field(default=None, description="A truncated sample of the input.")
