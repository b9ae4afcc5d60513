"""What the lander reads: one message of an input or output topic, and the rows it becomes.

A :class:`LandingRecord` is one Kafka message (or one line of a JSON Lines file)
from any of the pipeline's topics. :func:`rows_of` decodes a batch of them into
plain row dictionaries per staging frame, ready to become polars frames. Input
events that break the contract are skipped here: the allocation flow has already
dead-lettered them, and the dead-letter topic is landed like every other topic.
"""

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from allocflow.connectors.landing.ranges import UnlandableValueError, landed_time, make_landable
from allocflow.models.allocation_exceptions import AllocationException
from allocflow.models.carrier import CarrierEvent
from allocflow.models.codec import ContractError, decode_event
from allocflow.models.dead_letter import DeadLetterRecord
from allocflow.models.decisions import AllocationDecision
from allocflow.models.dq_alerts import DqAlert
from allocflow.models.envelope import EventEnvelope
from allocflow.models.inventory import InboundExpected, StockAdjusted, StockSnapshot
from allocflow.models.order_status import OrderStatus
from allocflow.models.orders import OrderCancelled, OrderChanged, OrderPlaced
from allocflow.models.route_alerts import RouteAlert
from allocflow.models.shipments import (
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentPicked,
    ShipmentShortShipped,
)
from allocflow.models.topics import OUTPUT_TOPICS, InputTopic, OutputTopic
from allocflow.models.vocabulary import Severity

_LOG = logging.getLogger(__name__)

Row = dict[str, Any]


@dataclass(frozen=True)
class LandingRecord:
    """One message to land.

    Attributes:
        topic: Logical topic (an :class:`InputTopic` or :class:`OutputTopic` value).
        source: Where it was read: the actual Kafka topic name or the file path.
            Landed offsets are kept per source and partition.
        partition: Kafka partition, or 0 for a file.
        offset: Kafka offset, or the 0-based line index in a file.
        value: The message bytes.
        timestamp: The message's Kafka timestamp (UTC), None for a file.
    """

    topic: str
    source: str
    partition: int
    offset: int
    value: bytes
    timestamp: datetime | None = None


@dataclass
class StagedRows:
    """A batch decoded into rows per staging frame, plus what was skipped or quarantined.

    Attributes:
        frames: Rows per staging frame name (``input_events``, ``placed``, ``decisions``…).
        skipped: Records that could not be decoded (input events that broke the
            contract, or output records that are not allocflow's).
        quarantined: Records that decoded but hold a value no landed column can hold;
            each became a ``dq_results`` row (origin ``landing``) instead.
    """

    frames: dict[str, list[Row]]
    skipped: int = 0
    quarantined: int = 0


LANDING_ORIGIN = "landing"
"""``dq_results.origin`` of what the lander itself found in a record."""
OUT_OF_RANGE = "out_of_range"
"""``dq_results.check_name`` of a record holding a value outside the landed range."""
_SAMPLE_CHARS = 2000


def utc(moment: datetime | None) -> datetime | None:
    """A time as a naive UTC ``datetime`` (how DuckDB ``TIMESTAMP`` stores it), never overflowing.

    A time outside the landed range becomes its nearest end (see :mod:`.ranges`).

    Example:
        >>> from datetime import timedelta, timezone
        >>> utc(datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))))
        datetime.datetime(2026, 1, 1, 10, 0)
    """
    return None if moment is None else landed_time(moment)[0]


def rows_of(records: Iterable[LandingRecord]) -> StagedRows:
    """Decode records into rows per staging frame.

    Undecodable records are counted as skipped. A record is staged whole or not at
    all: one holding a number no column can hold is quarantined as a ``dq_results``
    row; one holding a time outside the landed range lands clamped, with a row
    flagging it (see :mod:`allocflow.connectors.landing.ranges`).
    """
    staged = StagedRows(frames=defaultdict(list))
    for record in records:
        _stage_one(record, staged)
    return staged


def _stage_one(record: LandingRecord, staged: StagedRows) -> None:
    own: dict[str, list[Row]] = defaultdict(list)
    try:
        event_id = _stage(record, own)
    except ContractError:
        staged.skipped += 1
        return
    except ValueError as error:
        _LOG.warning("skipping %s: %s", _position(record), error)
        staged.skipped += 1
        return
    except Exception as error:  # a poison record must not stop landing: quarantine it
        _LOG.exception("quarantining %s: it could not be staged", _position(record))
        _quarantine(record, None, f"could not be staged ({type(error).__name__}: {error})", staged)
        return
    try:
        clamped = make_landable(own)
    except UnlandableValueError as error:
        _quarantine(record, event_id, str(error), staged)
        return
    for name, rows in own.items():
        staged.frames[name].extend(rows)
    if clamped:
        detail = "; ".join(c.describe() for c in clamped)
        staged.frames["dq_results"].append(
            _landing_result(record, event_id, f"{detail}; the record landed", Severity.WARNING)
        )


def _quarantine(
    record: LandingRecord, event_id: str | None, detail: str, staged: StagedRows
) -> None:
    _LOG.warning("quarantined %s: %s", _position(record), detail)
    staged.quarantined += 1
    staged.frames["dq_results"].append(_landing_result(record, event_id, detail, Severity.CRITICAL))


def _position(record: LandingRecord) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"


def _landing_result(
    record: LandingRecord, event_id: str | None, detail: str, severity: Severity
) -> Row:
    """A ``dq_results`` row about one record; its id follows the record's content."""
    digest = hashlib.sha256(record.topic.encode() + b"\0" + record.value).hexdigest()[:32]
    return {
        "result_id": f"{LANDING_ORIGIN}-{digest}",
        "origin": LANDING_ORIGIN,
        "check_name": OUT_OF_RANGE,
        "feed": record.topic,
        "severity": severity.value,
        "success": False,
        "event_id": event_id,
        "detected_at": datetime.now(UTC).replace(tzinfo=None),
        "element_count": None,
        "unexpected_count": 1,
        "detail": f"{_position(record)} ({record.source}): {detail}",
        "sample": record.value[:_SAMPLE_CHARS].decode("utf-8", "replace"),
    }


def _stage(record: LandingRecord, frames: dict[str, list[Row]]) -> str | None:
    """Stage one record; return the input event id it carries, if any."""
    if record.topic in _INPUT_TOPICS:
        event = decode_event(InputTopic(record.topic), record.value)
        _stage_input(record, event, frames)
        return event.event_id
    spec = OUTPUT_TOPICS.get(OutputTopic(record.topic))
    if spec is None:
        raise ValueError(f"unknown topic {record.topic!r}")
    output = spec.adapter.validate_json(record.value)
    _OUTPUT_STAGERS[type(output)](record, output, frames)
    event_id = getattr(output, "event_id", None)
    return event_id if isinstance(event_id, str) else None


_INPUT_TOPICS = frozenset(topic.value for topic in InputTopic)


def _stage_input(record: LandingRecord, event: EventEnvelope, frames: dict[str, list[Row]]) -> None:
    frames["input_events"].append(
        {
            "event_id": event.event_id,
            "topic": record.topic,
            "event_type": event.event_type,
            "event_time": event.event_time,
            "source": event.source.value,
            "ingested_at": record.timestamp,
            "order_id": getattr(event, "order_id", None),
            "shipment_id": getattr(event, "shipment_id", None),
            "customer_id": getattr(event, "customer_id", None),
            "sku": getattr(event, "sku", None),
            "node_id": getattr(event, "node_id", None),
            "detail": _detail(event),
        }
    )
    stager = _INPUT_STAGERS.get(type(event))
    if stager is not None:
        stager(event, frames)
    for rows in frames.values():
        for row in rows:
            row["topic"] = record.topic


def _detail(event: EventEnvelope) -> str:
    """One line for an order timeline."""
    for kind, describe in _DETAILS:
        if isinstance(event, kind):
            return describe(event)
    shipment_id = getattr(event, "shipment_id", None)
    return str(shipment_id) if shipment_id else ""


def _placed_detail(event: OrderPlaced) -> str:
    units = sum(line.qty for line in event.lines)
    return f"{len(event.lines)} lines, {units} units, {event.channel.value}, {event.region}"


def _changed_detail(event: OrderChanged) -> str:
    changes = ", ".join(f"{change.line_id} to {change.qty}" for change in event.changes)
    return changes or "promised date changed"


def _created_detail(event: ShipmentCreated) -> str:
    units = sum(line.qty for line in event.lines)
    return f"{event.shipment_id}: {units} units from {event.node_id} by {event.carrier_id}"


def _short_detail(event: ShipmentShortShipped) -> str:
    return f"{event.shipment_id}: {sum(line.qty_short for line in event.lines)} units short"


_DETAILS: tuple[tuple[type[Any], Callable[[Any], str]], ...] = (
    (OrderPlaced, _placed_detail),
    (OrderChanged, _changed_detail),
    (OrderCancelled, lambda e: e.reason or "cancelled"),
    (ShipmentCreated, _created_detail),
    (ShipmentShortShipped, _short_detail),
    (CarrierEvent, lambda e: f"{e.shipment_id}: {e.carrier_id} {e.location or ''}".strip()),
    (StockSnapshot, lambda e: f"{e.sku} at {e.node_id}"),
    (StockAdjusted, lambda e: f"{e.sku} at {e.node_id}"),
    (InboundExpected, lambda e: f"{e.qty} units of {e.sku} to {e.node_id}"),
)


def _stage_placed(event: OrderPlaced, frames: dict[str, list[Row]]) -> None:
    placed_at = event.event_time
    frames["placed"].append(
        {
            "event_id": event.event_id,
            "order_id": event.order_id,
            "customer_id": event.customer_id,
            "customer_tier": event.customer_tier,
            "channel": event.channel.value,
            "region": event.region,
            "placed_at": placed_at,
            "promised_date": event.promised_date,
            "line_count": len(event.lines),
        }
    )
    for line in event.lines:
        frames["placed_lines"].append(
            {
                "event_id": event.event_id,
                "order_id": event.order_id,
                "line_id": line.line_id,
                "sku": line.sku,
                "ordered_qty": line.qty,
                "unit_price": float(line.unit_price),
                "placed_at": placed_at,
                "region": event.region,
                "channel": event.channel.value,
                "customer_tier": event.customer_tier,
            }
        )


def _stage_cancelled(event: OrderCancelled, frames: dict[str, list[Row]]) -> None:
    frames["cancelled"].append(
        {
            "event_id": event.event_id,
            "order_id": event.order_id,
            "cancelled_at": event.event_time,
        }
    )


def _shipment_row(event: EventEnvelope, order_id: str | None, **columns: Any) -> Row:
    """One event's contribution to a shipment row; absent columns stage as null."""
    return {
        "event_id": event.event_id,
        "shipment_id": getattr(event, "shipment_id", None),
        "order_id": order_id,
        "short_units": 0,
        "scans": 0,
        **columns,
    }


def _stage_shipment_created(event: ShipmentCreated, frames: dict[str, list[Row]]) -> None:
    frames["shipments"].append(
        _shipment_row(
            event,
            event.order_id,
            node_id=event.node_id,
            carrier_id=event.carrier_id,
            lane=event.lane,
            dispatch_cutoff=event.dispatch_cutoff,
            promised_delivery=event.promised_delivery,
            units=sum(line.qty for line in event.lines),
            created_at=event.event_time,
        )
    )


def _stage_shipment_picked(event: ShipmentPicked, frames: dict[str, list[Row]]) -> None:
    frames["shipments"].append(_shipment_row(event, event.order_id, picked_at=event.event_time))


def _stage_shipment_dispatched(event: ShipmentDispatched, frames: dict[str, list[Row]]) -> None:
    frames["shipments"].append(
        _shipment_row(
            event,
            event.order_id,
            dispatched_at=event.event_time,
            tracking_no=event.tracking_no,
        )
    )


def _stage_shipment_delivered(event: ShipmentDelivered, frames: dict[str, list[Row]]) -> None:
    frames["shipments"].append(_shipment_row(event, event.order_id, delivered_at=event.event_time))


def _stage_short_shipped(event: ShipmentShortShipped, frames: dict[str, list[Row]]) -> None:
    short = sum(line.qty_short for line in event.lines)
    frames["shipments"].append(_shipment_row(event, event.order_id, short_units=short))


def _stage_carrier(event: CarrierEvent, frames: dict[str, list[Row]]) -> None:
    at = event.event_time
    delivered = at if event.event_type == "carrier.delivered" else None
    frames["carrier_events"].append(
        {
            "event_id": event.event_id,
            "shipment_id": event.shipment_id,
            "carrier_id": event.carrier_id,
            "event_type": event.event_type,
            "event_time": at,
            "location": event.location,
            "eta": event.eta,
            "code": getattr(event, "code", None),
            "description": getattr(event, "description", None) or getattr(event, "reason", None),
        }
    )
    frames["shipments"].append(
        _shipment_row(
            event,
            None,
            carrier_delivered_at=delivered,
            first_scan_at=at,
            last_scan_at=at,
            scans=1,
            latest_eta=event.eta,
            eta_at=at if event.eta is not None else None,
        )
    )


_INPUT_STAGERS: dict[type[Any], Callable[[Any, dict[str, list[Row]]], None]] = {
    OrderPlaced: _stage_placed,
    OrderCancelled: _stage_cancelled,
    ShipmentCreated: _stage_shipment_created,
    ShipmentPicked: _stage_shipment_picked,
    ShipmentDispatched: _stage_shipment_dispatched,
    ShipmentDelivered: _stage_shipment_delivered,
    ShipmentShortShipped: _stage_short_shipped,
}
_INPUT_STAGERS.update(
    dict.fromkeys(CarrierEvent.__subclasses__(), _stage_carrier),
)


def _stage_decision(
    record: LandingRecord, decision: AllocationDecision, frames: dict[str, list[Row]]
) -> None:
    frames["decisions"].append(
        {
            "decision_id": decision.decision_id,
            "order_id": decision.order_id,
            "line_id": decision.line_id,
            "sku": decision.sku,
            "customer_id": decision.customer_id,
            "decided_at": decision.decided_at,
            "cause_event_id": decision.cause_event_id,
            "policy_version": decision.policy_version,
            "rule": decision.rule,
            "outcome": decision.outcome.value,
            "requested_qty": decision.requested_qty,
            "allocated_qty": decision.allocated_qty,
            "backordered_qty": decision.backordered_qty,
            "allocations": [a.model_dump() for a in decision.allocations],
            "candidates": [_candidate(c.model_dump()) for c in decision.candidates],
            "reason_code": decision.reason_code.value if decision.reason_code else None,
            "explanation": decision.explanation,
            "source_partition": record.partition,
            "source_offset": record.offset,
            "produced_at": record.timestamp,
        }
    )


def _candidate(candidate: Row) -> Row:
    reason = candidate["rejected_reason"]
    candidate["rejected_reason"] = None if reason is None else str(reason)
    return candidate


def _stage_status(record: LandingRecord, status: OrderStatus, frames: dict[str, list[Row]]) -> None:
    frames["statuses"].append(
        {
            "order_id": status.order_id,
            "customer_id": status.customer_id,
            "status_version": status.version,
            "status": status.status.value,
            "status_as_of": status.as_of,
            "requested_qty": status.requested_qty,
            "allocated_qty": status.allocated_qty,
            "split_count": status.split_count,
            "nodes": list(status.nodes),
            "source_offset": record.offset,
        }
    )


def _stage_exception(
    record: LandingRecord, exception: AllocationException, frames: dict[str, list[Row]]
) -> None:
    del record
    closing = exception.state.value == "closed"
    frames["exceptions"].append(
        {
            "exception_id": exception.exception_id,
            "order_id": exception.order_id,
            "line_id": exception.line_id,
            "reason_code": exception.reason_code.value,
            "severity": exception.severity.value,
            "owner_role": exception.owner_role.value,
            "opened_at": exception.opened_at,
            "closed_at": exception.closed_at,
            "resolution": exception.resolution,
            "detail": None if closing else exception.detail,
            "opened_by_event_id": None if closing else exception.cause_event_id,
            "closed_by_event_id": exception.cause_event_id if closing else None,
        }
    )


def _stage_route_alert(
    record: LandingRecord, alert: RouteAlert, frames: dict[str, list[Row]]
) -> None:
    del record
    frames["route_alerts"].append(
        {
            "alert_id": alert.alert_id,
            "kind": alert.kind.value,
            "severity": alert.severity.value,
            "carrier_id": alert.carrier_id,
            "lane": alert.lane,
            "shipment_id": alert.shipment_id,
            "order_id": alert.order_id,
            "detected_at": alert.detected_at,
            "promised_delivery": alert.promised_delivery,
            "expected_delivery": alert.expected_delivery,
            "resolves_alert_id": alert.resolves_alert_id,
            "detail": alert.detail,
        }
    )


def _stage_dq_alert(record: LandingRecord, alert: DqAlert, frames: dict[str, list[Row]]) -> None:
    del record
    frames["dq_results"].append(
        {
            "result_id": alert.alert_id,
            "origin": "stream",
            "check_name": alert.check.value,
            "feed": alert.feed,
            "severity": alert.severity.value,
            "success": False,
            "event_id": alert.event_id,
            "detected_at": alert.detected_at,
            "element_count": None,
            "unexpected_count": 1,
            "detail": alert.detail,
            "sample": alert.sample,
        }
    )


def _stage_dead_letter(
    record: LandingRecord, letter: DeadLetterRecord, frames: dict[str, list[Row]]
) -> None:
    frames["dead_letters"].append(
        {
            "dead_letter_id": letter.dead_letter_id,
            "source_topic": letter.source_topic,
            "source_partition": letter.partition,
            "source_offset": letter.offset,
            "message_key": letter.key,
            "source_timestamp": letter.source_timestamp,
            "event_id": letter.event_id,
            "reason_code": letter.reason_code.value,
            "reason": letter.reason,
            "errors": [e.model_dump() for e in letter.errors],
            "raw": letter.raw,
            "landed_from": f"{record.topic}[{record.partition}]@{record.offset}",
            "dead_lettered_at": record.timestamp,
        }
    )


_OUTPUT_STAGERS: dict[type[Any], Callable[[LandingRecord, Any, dict[str, list[Row]]], None]] = {
    AllocationDecision: _stage_decision,
    OrderStatus: _stage_status,
    AllocationException: _stage_exception,
    RouteAlert: _stage_route_alert,
    DqAlert: _stage_dq_alert,
    DeadLetterRecord: _stage_dead_letter,
}
