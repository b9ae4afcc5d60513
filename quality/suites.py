"""The Great Expectations suites of the landed tables, one per table, defined in code.

Each :class:`TableSuite` names its table, the SQL expression of a row's event time
(which selects the row into a validation window), the derived columns its relations
need and its expectations. Expectations carry a GX severity (``critical`` for keys,
vocabularies and quantity relations the pipeline guarantees, ``warning`` for gaps
the data can legitimately show for a while, such as an order whose placement has
not landed yet). The vocabularies come from the contract's enumerations, so a new
value there is a valid value here.

The freshness expectations compare a table's newest event time with the
``fresh_after`` suite parameter, which the runner sets to the landing watermark
minus the freshness allowance.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from allocflow.models.carrier import (
    CarrierDelivered,
    CarrierEtaUpdated,
    CarrierException,
    CarrierInTransit,
    CarrierPickedUp,
)
from allocflow.models.decisions import DecisionOutcome
from allocflow.models.envelope import Source
from allocflow.models.order_status import OrderStatusKind
from allocflow.models.orders import Channel
from allocflow.models.topics import InputTopic
from allocflow.models.vocabulary import OwnerRole, ReasonCode, Severity
from allocflow.quality._gx import gxe

FRESH_AFTER = "fresh_after"
"""Suite parameter: the oldest acceptable newest event time of a feed."""

ALLOCATED_PLUS_BACKORDERED = "allocated_plus_backordered"
"""Derived column: allocated + backordered units of a line not cancelled (else NULL)."""

_QTY_SUM = "CASE WHEN outcome <> 'cancelled' THEN allocated_qty + backordered_qty END"

Expectation = Any
"""A ``great_expectations`` expectation (GX is untyped)."""


@dataclass(frozen=True)
class TableSuite:
    """The expectations of one landed table.

    Attributes:
        table: The landed table.
        key: Columns that identify a row; failures name the rows by them.
        event_time: SQL expression of a row's event time; a windowed run validates
            the rows whose event time falls in the window.
        derived: ``(name, SQL expression)`` of columns computed for the batch.
        expectations: The GX expectations, in report order.
    """

    table: str
    key: tuple[str, ...]
    event_time: str
    derived: tuple[tuple[str, str], ...]
    expectations: tuple[Expectation, ...]

    def columns(self) -> tuple[str, ...]:
        """Return the table columns the expectations read, in first-use order."""
        derived = {name for name, _ in self.derived}
        seen: dict[str, None] = dict.fromkeys(self.key)
        for expectation in self.expectations:
            for column in expectation_columns(expectation):
                if column not in derived:
                    seen.setdefault(column)
        return tuple(seen)


def expectation_columns(expectation: Expectation) -> tuple[str, ...]:
    """Return the columns an expectation reads (``column``, ``column_A``/``column_B``)."""
    if getattr(expectation, "column", None) is not None:
        return (str(expectation.column),)
    return (str(expectation.column_A), str(expectation.column_B))


def _not_null(*columns: str, severity: Severity = Severity.CRITICAL) -> list[Expectation]:
    return [
        gxe.ExpectColumnValuesToNotBeNull(column=column, severity=severity.value)
        for column in columns
    ]


def _in_set(column: str, values: Iterable[object]) -> Expectation:
    return gxe.ExpectColumnValuesToBeInSet(
        column=column, value_set=sorted(str(v) for v in values), severity=Severity.CRITICAL.value
    )


def _at_least(*columns: str, minimum: int = 0) -> list[Expectation]:
    return [
        gxe.ExpectColumnValuesToBeBetween(
            column=column, min_value=minimum, severity=Severity.CRITICAL.value
        )
        for column in columns
    ]


def _not_before(later: str, earlier: str, severity: Severity = Severity.CRITICAL) -> Expectation:
    """``later >= earlier`` on every row where both are known."""
    return gxe.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A=later,
        column_B=earlier,
        or_equal=True,
        ignore_row_if="either_value_is_missing",
        severity=severity.value,
    )


def _fresh(column: str) -> Expectation:
    return gxe.ExpectColumnMaxToBeBetween(
        column=column, min_value={"$PARAMETER": FRESH_AFTER}, severity=Severity.WARNING.value
    )


def _quantities_add_up() -> Expectation:
    """Allocated + backordered = requested on every line that is not cancelled."""
    return gxe.ExpectColumnPairValuesToBeEqual(
        column_A=ALLOCATED_PLUS_BACKORDERED,
        column_B="requested_qty",
        ignore_row_if="either_value_is_missing",
        severity=Severity.CRITICAL.value,
    )


def _decision_quantities() -> list[Expectation]:
    return [
        *_at_least("requested_qty", "allocated_qty", "backordered_qty"),
        _not_before("requested_qty", "allocated_qty"),
        _quantities_add_up(),
    ]


_CARRIER_EVENT_TYPES = tuple(
    str(model.model_fields["event_type"].default)
    for model in (
        CarrierPickedUp,
        CarrierInTransit,
        CarrierEtaUpdated,
        CarrierException,
        CarrierDelivered,
    )
)


def build_suites() -> tuple[TableSuite, ...]:
    """Return the suite of every validated landed table.

    Returns:
        One suite each for orders, order lines, decisions, exceptions, shipments,
        carrier events and input events.
    """
    return (
        TableSuite(
            "orders",
            ("order_id",),
            "coalesce(placed_at, status_as_of, first_decided_at)",
            (),
            (
                *_not_null("order_id"),
                *_not_null("customer_id", "placed_at", severity=Severity.WARNING),
                _in_set("channel", Channel),
                _in_set("status", OrderStatusKind),
                *_at_least("line_count", minimum=1),
                *_at_least("requested_qty", "allocated_qty", "split_count"),
                _not_before("requested_qty", "allocated_qty"),
                _not_before("promised_date", "placed_at"),
                _not_before("allocated_at", "placed_at"),
                _not_before("first_dispatched_at", "placed_at"),
                _not_before("delivered_at", "first_dispatched_at"),
            ),
        ),
        TableSuite(
            "order_lines",
            ("order_id", "line_id"),
            "coalesce(decided_at, placed_at)",
            ((ALLOCATED_PLUS_BACKORDERED, _QTY_SUM),),
            (
                *_not_null("order_id", "line_id"),
                *_not_null("sku", severity=Severity.WARNING),
                _in_set("outcome", DecisionOutcome),
                _in_set("reason_code", ReasonCode),
                _in_set("channel", Channel),
                *_at_least("ordered_qty", minimum=1),
                *_decision_quantities(),
                _not_before("first_decided_at", "placed_at"),
            ),
        ),
        TableSuite(
            "allocation_decisions",
            ("decision_id",),
            "decided_at",
            ((ALLOCATED_PLUS_BACKORDERED, _QTY_SUM),),
            (
                *_not_null("decision_id", "order_id", "line_id", "decided_at"),
                _in_set("outcome", DecisionOutcome),
                _in_set("reason_code", ReasonCode),
                *_decision_quantities(),
                *_at_least("latency_ms"),
            ),
        ),
        TableSuite(
            "exceptions",
            ("exception_id",),
            "greatest(opened_at, closed_at)",
            (),
            (
                *_not_null("exception_id", "order_id", "reason_code", "opened_at"),
                _in_set("reason_code", ReasonCode),
                _in_set("severity", Severity),
                _in_set("owner_role", OwnerRole),
                _not_before("closed_at", "opened_at"),
            ),
        ),
        TableSuite(
            "shipments",
            ("shipment_id",),
            "greatest(created_at, dispatched_at, delivered_at, last_scan_at)",
            (),
            (
                *_not_null("shipment_id"),
                *_not_null("order_id", "created_at", severity=Severity.WARNING),
                *_at_least("units", minimum=1),
                *_at_least("short_units", "scans"),
                _not_before("picked_at", "created_at"),
                _not_before("dispatched_at", "created_at"),
                _not_before("delivered_at", "dispatched_at"),
                _not_before("carrier_delivered_at", "dispatched_at"),
            ),
        ),
        TableSuite(
            "carrier_events",
            ("event_id",),
            "event_time",
            (),
            (
                *_not_null("event_id", "shipment_id", "carrier_id", "event_time"),
                _in_set("event_type", _CARRIER_EVENT_TYPES),
                _fresh("event_time"),
            ),
        ),
        TableSuite(
            "input_events",
            ("event_id",),
            "event_time",
            (),
            (
                *_not_null("event_id", "topic", "event_type", "event_time"),
                _in_set("topic", InputTopic),
                _in_set("source", Source),
                _fresh("event_time"),
            ),
        ),
    )
