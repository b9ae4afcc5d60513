"""Properties of the event contract over generated events and records."""

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from allocflow.models._internal.types import IDENTIFIER_PATTERN, INVISIBLE_IN_IDS
from allocflow.models.allocation_exceptions import AllocationException, ExceptionState
from allocflow.models.carrier import (
    CarrierDelivered,
    CarrierEtaUpdated,
    CarrierException,
    CarrierInTransit,
    CarrierPickedUp,
)
from allocflow.models.codec import ContractError, decode_event, encode_event
from allocflow.models.dead_letter import DeadLetterReason, DeadLetterRecord, FieldError
from allocflow.models.decisions import (
    AllocationDecision,
    Candidate,
    DecisionOutcome,
    NodeAllocation,
)
from allocflow.models.dq_alerts import DqAlert, DqCheck
from allocflow.models.envelope import Source
from allocflow.models.inventory import (
    AdjustmentReason,
    InboundExpected,
    ReservationCreated,
    ReservationReleased,
    StockAdjusted,
    StockSnapshot,
)
from allocflow.models.order_status import OrderStatus, OrderStatusKind
from allocflow.models.orders import (
    Channel,
    CreditHoldPlaced,
    CreditHoldReleased,
    LineChange,
    OrderCancelled,
    OrderChanged,
    OrderLine,
    OrderPlaced,
)
from allocflow.models.route_alerts import RouteAlert, RouteAlertKind
from allocflow.models.shipments import (
    ShipmentCreated,
    ShipmentDelivered,
    ShipmentDispatched,
    ShipmentLine,
    ShipmentPicked,
    ShipmentShortShipped,
    ShortLine,
)
from allocflow.models.topics import (
    INPUT_TOPICS,
    OUTPUT_TOPICS,
    InputEvent,
    InputTopic,
    OutputTopic,
)
from allocflow.models.vocabulary import OwnerRole, ReasonCode, Severity

pytestmark = pytest.mark.property

MODEST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PER_TYPE = settings(MODEST, max_examples=40)

# --- building blocks ------------------------------------------------------------------

# RFC 3339 offsets have whole minutes; pydantic writes only hours and minutes.
offsets = st.integers(min_value=-12 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
aware_datetimes = st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime(2100, 1, 1), timezones=offsets
)
realistic_ids = st.from_regex(r"[A-Z]{2,4}-[0-9]{1,7}", fullmatch=True)
unusual_ids = st.text(
    alphabet=st.characters(exclude_categories=("Z", "C")), min_size=1, max_size=40
).filter(lambda text: INVISIBLE_IN_IDS.search(text) is None)
identifiers = st.one_of(realistic_ids, unusual_ids)
texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
quantities = st.integers(min_value=1, max_value=10_000_000)
stock_levels = st.integers(min_value=-10_000_000, max_value=10_000_000)
money = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
offsets_in_topic = st.one_of(st.none(), st.integers(min_value=0, max_value=2**63 - 1))


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def event(model: type[BaseModel], **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(
        model,
        event_id=identifiers,
        event_time=aware_datetimes,
        source=st.sampled_from(Source),
        **fields,
    )


# --- input events ---------------------------------------------------------------------

order_lines = st.builds(
    OrderLine,
    line_id=identifiers,
    sku=identifiers,
    qty=quantities,
    unit_price=money,
    unit_cost=money,
)
line_changes = st.builds(LineChange, line_id=identifiers, sku=identifiers, qty=quantities)


def _unique_changes(min_size: int) -> st.SearchStrategy[list[LineChange]]:
    return st.lists(line_changes, min_size=min_size, max_size=4, unique_by=lambda c: c.line_id)


@st.composite
def shipments_created(draw: st.DrawFn) -> ShipmentCreated:
    cutoff, promise = sorted([draw(aware_datetimes), draw(aware_datetimes)])
    lines = st.builds(ShipmentLine, line_id=identifiers, sku=identifiers, qty=quantities)
    created: ShipmentCreated = draw(
        event(
            ShipmentCreated,
            shipment_id=identifiers,
            order_id=identifiers,
            node_id=identifiers,
            carrier_id=identifiers,
            lane=identifiers,
            dispatch_cutoff=st.just(cutoff),
            promised_delivery=st.just(promise),
            lines=st.lists(lines, min_size=1, max_size=4),
        )
    )
    return created


def carrier_event(model: type[BaseModel], **fields: st.SearchStrategy[Any]) -> Any:
    common = {
        "shipment_id": identifiers,
        "carrier_id": identifiers,
        "tracking_no": identifiers,
        "location": optional(identifiers),
        "eta": optional(aware_datetimes),
    }
    return event(model, **{**common, **fields})


INPUT_STRATEGIES: dict[type[BaseModel], st.SearchStrategy[Any]] = {
    OrderPlaced: event(
        OrderPlaced,
        order_id=identifiers,
        customer_id=identifiers,
        customer_tier=st.sampled_from(["platinum", "gold", "silver", "bronze"]) | identifiers,
        channel=st.sampled_from(Channel),
        region=identifiers,
        promised_date=aware_datetimes,
        lines=st.lists(order_lines, min_size=1, max_size=4, unique_by=lambda line: line.line_id),
    ),
    OrderChanged: st.one_of(
        event(
            OrderChanged,
            order_id=identifiers,
            changes=_unique_changes(1),
            promised_date=optional(aware_datetimes),
        ),
        event(
            OrderChanged,
            order_id=identifiers,
            changes=_unique_changes(0),
            promised_date=aware_datetimes,
        ),
    ),
    OrderCancelled: event(OrderCancelled, order_id=identifiers, reason=texts),
    CreditHoldPlaced: event(
        CreditHoldPlaced, customer_id=identifiers, hold_id=identifiers, reason=texts
    ),
    CreditHoldReleased: event(CreditHoldReleased, customer_id=identifiers, hold_id=identifiers),
    StockSnapshot: event(StockSnapshot, node_id=identifiers, sku=identifiers, on_hand=stock_levels),
    StockAdjusted: event(
        StockAdjusted,
        node_id=identifiers,
        sku=identifiers,
        delta=stock_levels.filter(bool),
        reason=st.sampled_from(AdjustmentReason),
        po_id=optional(identifiers),
        on_hand_after=optional(stock_levels),
    ),
    InboundExpected: event(
        InboundExpected,
        po_id=identifiers,
        supplier_id=identifiers,
        node_id=identifiers,
        sku=identifiers,
        qty=quantities,
        eta=aware_datetimes,
    ),
    ReservationCreated: event(
        ReservationCreated,
        reservation_id=identifiers,
        node_id=identifiers,
        sku=identifiers,
        qty=quantities,
        order_id=optional(identifiers),
    ),
    ReservationReleased: event(
        ReservationReleased, reservation_id=identifiers, node_id=identifiers, sku=identifiers
    ),
    ShipmentCreated: shipments_created(),
    ShipmentPicked: event(ShipmentPicked, shipment_id=identifiers, order_id=identifiers),
    ShipmentDispatched: event(
        ShipmentDispatched,
        shipment_id=identifiers,
        order_id=identifiers,
        carrier_id=identifiers,
        tracking_no=identifiers,
    ),
    ShipmentDelivered: event(ShipmentDelivered, shipment_id=identifiers, order_id=identifiers),
    ShipmentShortShipped: event(
        ShipmentShortShipped,
        shipment_id=identifiers,
        order_id=identifiers,
        lines=st.lists(
            st.builds(ShortLine, line_id=identifiers, sku=identifiers, qty_short=quantities),
            min_size=1,
            max_size=4,
        ),
    ),
    CarrierPickedUp: carrier_event(CarrierPickedUp),
    CarrierInTransit: carrier_event(CarrierInTransit),
    CarrierEtaUpdated: carrier_event(CarrierEtaUpdated, eta=aware_datetimes, reason=texts),
    CarrierException: carrier_event(CarrierException, code=identifiers, description=texts),
    CarrierDelivered: carrier_event(CarrierDelivered),
}
TOPIC_OF: dict[type[BaseModel], InputTopic] = {
    model: topic for topic, spec in INPUT_TOPICS.items() for model in spec.messages
}
input_events = st.one_of(*INPUT_STRATEGIES.values())

# --- output records -------------------------------------------------------------------


@st.composite
def decisions(draw: st.DrawFn) -> AllocationDecision:
    outcome = draw(st.sampled_from(DecisionOutcome))
    allocations = draw(
        st.lists(
            st.builds(NodeAllocation, node_id=identifiers, qty=quantities),
            max_size=3,
            unique_by=lambda allocation: allocation.node_id,
        )
    )
    allocated = sum(allocation.qty for allocation in allocations)
    backordered = draw(st.integers(min_value=0, max_value=10_000_000))
    cancelled = outcome is DecisionOutcome.CANCELLED
    requested = draw(st.integers(min_value=0, max_value=10**8)) if cancelled else allocated
    reasons = st.sampled_from(ReasonCode)
    candidates = st.builds(
        Candidate,
        node_id=identifiers,
        rank=st.integers(min_value=1, max_value=20),
        available_qty=st.integers(min_value=0, max_value=10**8),
        rejected_reason=optional(reasons),
    )
    return AllocationDecision(
        decision_id=draw(identifiers),
        order_id=draw(identifiers),
        line_id=draw(identifiers),
        sku=draw(identifiers),
        customer_id=draw(identifiers),
        decided_at=draw(aware_datetimes),
        cause_event_id=draw(identifiers),
        policy_version=draw(identifiers),
        rule=draw(identifiers),
        outcome=outcome,
        requested_qty=requested if cancelled else allocated + backordered,
        allocated_qty=allocated,
        backordered_qty=backordered,
        allocations=allocations,
        candidates=draw(st.lists(candidates, max_size=4)),
        reason_code=draw(optional(reasons) if outcome is DecisionOutcome.ALLOCATED else reasons),
        explanation=draw(texts),
    )


@st.composite
def allocation_exceptions(draw: st.DrawFn) -> AllocationException:
    state = draw(st.sampled_from(ExceptionState))
    opened_at = draw(aware_datetimes)
    open_for = timedelta(seconds=draw(st.integers(min_value=0, max_value=90 * 86_400)))
    closed_at = (opened_at + open_for).astimezone(draw(offsets))
    return AllocationException(
        record_id=draw(identifiers),
        exception_id=draw(identifiers),
        state=state,
        order_id=draw(identifiers),
        line_id=draw(optional(identifiers)),
        reason_code=draw(st.sampled_from(ReasonCode)),
        severity=draw(st.sampled_from(Severity)),
        owner_role=draw(st.sampled_from(OwnerRole)),
        opened_at=opened_at,
        closed_at=closed_at if state is ExceptionState.CLOSED else None,
        resolution=draw(optional(texts)),
        detail=draw(texts),
        cause_event_id=draw(identifiers),
    )


counts = st.integers(min_value=0, max_value=10_000)
order_statuses = st.builds(
    OrderStatus,
    record_id=identifiers,
    order_id=identifiers,
    customer_id=identifiers,
    version=st.integers(min_value=1, max_value=10**6),
    status=st.sampled_from(OrderStatusKind),
    lines=st.integers(min_value=1, max_value=500),
    lines_allocated=counts,
    lines_partial=counts,
    lines_backordered=counts,
    lines_held=counts,
    lines_cancelled=counts,
    requested_qty=counts,
    allocated_qty=counts,
    nodes=st.lists(identifiers, max_size=4),
    split_count=counts,
    as_of=aware_datetimes,
    cause_event_id=identifiers,
    policy_version=identifiers,
)

field_errors = st.builds(FieldError, field=texts, message=texts, value=optional(texts))

OUTPUT_STRATEGIES: dict[type[BaseModel], st.SearchStrategy[Any]] = {
    AllocationDecision: decisions(),
    OrderStatus: order_statuses,
    AllocationException: allocation_exceptions(),
    RouteAlert: st.builds(
        RouteAlert,
        alert_id=identifiers,
        kind=st.sampled_from(RouteAlertKind),
        severity=st.sampled_from(Severity),
        carrier_id=identifiers,
        lane=identifiers,
        shipment_id=optional(identifiers),
        order_id=optional(identifiers),
        detected_at=aware_datetimes,
        promised_delivery=optional(aware_datetimes),
        expected_delivery=optional(aware_datetimes),
        resolves_alert_id=optional(identifiers),
        detail=texts,
    ),
    DqAlert: st.builds(
        DqAlert,
        alert_id=identifiers,
        check=st.sampled_from(DqCheck),
        severity=st.sampled_from(Severity),
        feed=identifiers,
        event_id=optional(identifiers),
        entity=st.dictionaries(texts, texts, max_size=3),
        detected_at=aware_datetimes,
        detail=texts,
        sample=optional(texts),
    ),
    DeadLetterRecord: st.builds(
        DeadLetterRecord,
        dead_letter_id=identifiers,
        source_topic=identifiers,
        partition=offsets_in_topic,
        offset=offsets_in_topic,
        key=optional(texts),
        source_timestamp=optional(aware_datetimes),
        event_id=optional(texts),
        reason_code=st.sampled_from(DeadLetterReason),
        reason=texts,
        errors=st.lists(field_errors, max_size=3),
        raw=st.binary(max_size=200),
    ),
}
OUTPUT_TOPIC_OF: dict[type[BaseModel], OutputTopic] = {
    model: topic for topic, spec in OUTPUT_TOPICS.items() for model in spec.messages
}

# --- invalid mutations ----------------------------------------------------------------

# JSON numbers may exceed the 64-bit integers that many parsers and encoders stop at.
huge_integers = st.integers(min_value=2**64)
huge_negatives = huge_integers.map(lambda value: -value)
whitespace = st.sampled_from(
    [" ", "\t", "\n", "\u00a0", "\u3000", "\x00", "\x1b", "\u200b", "\ufeff", "\u202e", "\u3164"]
)
# Timestamps of an input event lie in [2000-01-01, 2200-01-01) UTC.
out_of_range_datetimes = st.one_of(
    st.datetimes(max_value=datetime(1999, 12, 30), timezones=offsets),
    st.datetimes(min_value=datetime(2200, 1, 2), timezones=offsets),
).map(datetime.isoformat)
BAD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "quantity": st.one_of(st.integers(min_value=-10_000_000, max_value=0), huge_negatives),
    "naive_datetime": st.one_of(st.datetimes().map(datetime.isoformat), out_of_range_datetimes),
    "identifier": st.one_of(
        st.just(""),
        st.builds(lambda a, gap, b: a + gap + b, realistic_ids, whitespace, st.text(max_size=5)),
        st.just("x" * 129),
    ),
    "enum": st.text(max_size=8).map(lambda suffix: f"not-a-{suffix}"),
}


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    branches = [branch for branch in schema.get("anyOf", []) if branch != {"type": "null"}]
    return branches[0] if len(branches) == 1 else schema


def _definition(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    reference = schema.get("$ref")
    return defs[reference.rsplit("/", 1)[1]] if reference else schema


def mutation_sites(
    schema: dict[str, Any], defs: dict[str, Any], document: dict[str, Any], path: tuple[Any, ...]
) -> list[tuple[tuple[Any, ...], str]]:
    """Every (field path, kind of bad value) that a document of ``schema`` can be broken at."""
    sites: list[tuple[tuple[Any, ...], str]] = []
    required = set(schema.get("required", []))
    for name, declared in schema["properties"].items():
        here = (*path, name)
        if name in required:
            sites.append((here, "drop"))
        field = _definition(_non_null(declared), defs)
        value = document.get(name)
        if "enum" in field:
            sites.append((here, "enum"))
        elif field.get("type") == "object" and isinstance(value, dict):
            sites.extend(mutation_sites(field, defs, value, here))
        elif field.get("type") == "array":
            item_schema = _definition(field["items"], defs)
            for index, item in enumerate(value or []):
                sites.extend(mutation_sites(item_schema, defs, item, (*here, index)))
        elif field.get("format") == "date-time":
            sites.append((here, "naive_datetime"))
        elif field.get("pattern") == IDENTIFIER_PATTERN:
            sites.append((here, "identifier"))
        elif field.get("type") == "integer" and field.get("exclusiveMinimum") == 0:
            sites.append((here, "quantity"))
    return sites


def mutate(document: dict[str, Any], path: tuple[Any, ...], kind: str, bad: Any) -> None:
    *parents, leaf = path
    node: Any = document
    for part in parents:
        node = node[part]
    if kind == "drop":
        del node[leaf]
    else:
        node[leaf] = bad


# --- arbitrary input ------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | huge_integers | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
FIELD_NAMES = sorted(
    {name for model in TOPIC_OF for name in model.model_fields} | {"qty", "line_id", "sku"}
)
EVENT_TYPES = sorted(model.model_fields["event_type"].default for model in TOPIC_OF)
event_like_documents = st.builds(
    lambda event_type, fields: {**fields, "event_type": event_type},
    st.sampled_from(EVENT_TYPES) | st.text(max_size=12),
    st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=8),
)
arbitrary_messages = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    event_like_documents.map(lambda value: json.dumps(value).encode()),
)


def _decode_or_error(topic: InputTopic, raw: bytes) -> InputEvent | ContractError:
    try:
        return decode_event(topic, raw)
    except ContractError as error:
        return error


# --- properties -----------------------------------------------------------------------


def test_every_message_type_has_a_strategy() -> None:
    assert set(INPUT_STRATEGIES) == set(TOPIC_OF)
    assert set(OUTPUT_STRATEGIES) == set(OUTPUT_TOPIC_OF)


@pytest.mark.parametrize("model", list(INPUT_STRATEGIES), ids=lambda model: model.__name__)
@PER_TYPE
@given(data=st.data())
def test_input_event_round_trips_through_its_topic(model: type[BaseModel], data: Any) -> None:
    original = data.draw(INPUT_STRATEGIES[model])
    raw = encode_event(original)
    decoded = decode_event(TOPIC_OF[model], raw)
    assert type(decoded) is model
    assert decoded == original
    assert encode_event(decoded) == raw
    assert decoded.message_key() == original.message_key()


@pytest.mark.parametrize("model", list(OUTPUT_STRATEGIES), ids=lambda model: model.__name__)
@PER_TYPE
@given(data=st.data())
def test_output_record_round_trips_through_its_topic(model: type[BaseModel], data: Any) -> None:
    original = data.draw(OUTPUT_STRATEGIES[model])
    adapter = OUTPUT_TOPICS[OUTPUT_TOPIC_OF[model]].adapter
    raw = adapter.dump_json(original)
    decoded = adapter.validate_json(raw)
    assert decoded == original
    assert adapter.dump_json(decoded) == raw


@MODEST
@given(record=OUTPUT_STRATEGIES[DeadLetterRecord])
def test_dead_letter_raw_bytes_survive_json_as_base64(record: DeadLetterRecord) -> None:
    document = json.loads(record.model_dump_json())
    assert DeadLetterRecord.model_validate_json(json.dumps(document)).raw == record.raw
    assert isinstance(document["raw"], str)


@MODEST
@given(original=input_events, data=st.data())
def test_an_invalid_field_is_rejected_naming_its_path(original: Any, data: Any) -> None:
    model = type(original)
    document = json.loads(encode_event(original))
    schema = model.model_json_schema()
    sites = mutation_sites(schema, schema.get("$defs", {}), document, ())
    path, kind = data.draw(st.sampled_from(sites), label="site")
    bad = None if kind == "drop" else data.draw(BAD_VALUES[kind], label="bad value")
    mutate(document, path, kind, bad)

    with pytest.raises(ContractError) as caught:
        decode_event(TOPIC_OF[model], json.dumps(document).encode())

    assert caught.value.reason_code is DeadLetterReason.SCHEMA_VIOLATION
    assert ".".join(str(part) for part in path) in {error.field for error in caught.value.errors}


@MODEST
@given(topic=st.sampled_from(InputTopic), raw=arbitrary_messages)
def test_decoding_arbitrary_bytes_raises_nothing_but_contract_error(
    topic: InputTopic, raw: bytes
) -> None:
    outcome = _decode_or_error(topic, raw)
    if isinstance(outcome, ContractError):
        assert outcome.errors
        assert outcome.summary
        assert isinstance(outcome.reason_code, DeadLetterReason)
    else:
        assert type(outcome) in INPUT_TOPICS[topic].messages
