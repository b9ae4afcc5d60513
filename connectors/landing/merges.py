"""How each staging frame merges into its fact table: one SQL statement per frame.

Every statement is idempotent for the rows it is given: logs insert with ``ON
CONFLICT DO NOTHING``; entities merge with rules that give the same result whatever
the order and however often a row arrives (earliest time wins, latest version or
offset wins, first non-null wins). Additive columns (``decisions``, ``scans``,
``short_units``) only ever receive rows the batch saw for the first time — the
writer filters staging frames down to new event and decision ids first.
"""

from collections.abc import Iterable

from allocflow.connectors.landing.staging import SHIPMENT_EARLIEST, SHIPMENT_FIRST
from allocflow.models.vocabulary import ReasonCode


def _insert(table: str, columns: Iterable[str], frame: str, conflict: str) -> str:
    names = ", ".join(columns)
    return f"INSERT INTO {table} ({names}) SELECT {names} FROM {frame} {conflict}"


def _on_conflict(keys: str, assignments: Iterable[str]) -> str:
    return f"ON CONFLICT ({keys}) DO UPDATE SET {', '.join(assignments)}"


def _replace(columns: Iterable[str]) -> list[str]:
    return [f"{c} = excluded.{c}" for c in columns]


def _earliest(table: str, columns: Iterable[str]) -> list[str]:
    return [f"{c} = least({table}.{c}, excluded.{c})" for c in columns]


def _keep_first(table: str, columns: Iterable[str]) -> list[str]:
    return [f"{c} = coalesce({table}.{c}, excluded.{c})" for c in columns]


def _when(table: str, condition: str, columns: Iterable[str]) -> list[str]:
    return [f"{c} = CASE WHEN {condition} THEN excluded.{c} ELSE {table}.{c} END" for c in columns]


_PLACED = ("customer_id", "customer_tier", "channel", "region", "placed_at", "promised_date")
PLACED_ORDERS = _insert(
    "orders",
    ("order_id", *_PLACED, "line_count"),
    "b_placed",
    _on_conflict("order_id", _replace((*_PLACED, "line_count"))),
)

_LINE_DIMS = ("sku", "ordered_qty", "unit_price", "placed_at", "region", "channel", "customer_tier")
PLACED_LINES = _insert(
    "order_lines",
    ("order_id", "line_id", *_LINE_DIMS),
    "b_placed_lines",
    _on_conflict("order_id, line_id", _replace(_LINE_DIMS)),
)

CANCELLED_ORDERS = _insert(
    "orders",
    ("order_id", "cancelled_at"),
    "b_cancelled",
    _on_conflict("order_id", _earliest("orders", ("cancelled_at",))),
)

_STATUS = (
    "status",
    "status_version",
    "status_as_of",
    "requested_qty",
    "allocated_qty",
    "split_count",
    "nodes",
)
ORDER_STATUSES = _insert(
    "orders",
    ("order_id", "customer_id", *_STATUS, "first_decided_at", "allocated_at"),
    "b_statuses",
    _on_conflict(
        "order_id",
        [
            *_keep_first("orders", ("customer_id",)),
            *_when(
                "orders",
                "excluded.status_version > coalesce(orders.status_version, 0)",
                _STATUS,
            ),
            *_earliest("orders", ("first_decided_at", "allocated_at")),
        ],
    ),
)

_FIRST = (
    "first_decision_id",
    "first_offset",
    "first_decided_at",
    "first_outcome",
    "first_requested_qty",
    "first_allocated_qty",
)
_CURRENT = (
    "decision_id",
    "last_offset",
    "decided_at",
    "outcome",
    "requested_qty",
    "allocated_qty",
    "backordered_qty",
    "reason_code",
    "allocations",
)
LINE_DECISIONS = _insert(
    "order_lines",
    ("order_id", "line_id", "sku", "decisions", *_FIRST, *_CURRENT),
    "b_line_decisions",
    _on_conflict(
        "order_id, line_id",
        [
            *_keep_first("order_lines", ("sku",)),
            "decisions = order_lines.decisions + excluded.decisions",
            *_when(
                "order_lines",
                "order_lines.first_offset IS NULL "
                "OR excluded.first_offset < order_lines.first_offset",
                _FIRST,
            ),
            *_when(
                "order_lines",
                "order_lines.last_offset IS NULL OR excluded.last_offset > order_lines.last_offset",
                _CURRENT,
            ),
        ],
    ),
)

_EXCEPTION_FIXED = ("order_id", "line_id", "reason_code", "severity", "owner_role", "opened_at")
EXCEPTIONS = _insert(
    "exceptions",
    (
        "exception_id",
        *_EXCEPTION_FIXED,
        "closed_at",
        "resolution",
        "detail",
        "opened_by_event_id",
        "closed_by_event_id",
    ),
    "b_exceptions",
    _on_conflict(
        "exception_id",
        [
            *_keep_first("exceptions", ("detail", "opened_by_event_id")),
            *[f"{c} = coalesce(excluded.{c}, exceptions.{c})" for c in ("closed_at", "resolution")],
            "closed_by_event_id = coalesce(excluded.closed_by_event_id, "
            "exceptions.closed_by_event_id)",
        ],
    ),
)

SHIPMENTS = _insert(
    "shipments",
    (
        "shipment_id",
        *SHIPMENT_FIRST,
        *SHIPMENT_EARLIEST,
        "last_scan_at",
        "short_units",
        "scans",
        "latest_eta",
        "eta_at",
    ),
    "b_shipments",
    _on_conflict(
        "shipment_id",
        [
            *_keep_first("shipments", SHIPMENT_FIRST),
            *_earliest("shipments", SHIPMENT_EARLIEST),
            "last_scan_at = greatest(shipments.last_scan_at, excluded.last_scan_at)",
            "short_units = shipments.short_units + excluded.short_units",
            "scans = shipments.scans + excluded.scans",
            *_when(
                "shipments",
                "excluded.eta_at IS NOT NULL "
                "AND (shipments.eta_at IS NULL OR excluded.eta_at >= shipments.eta_at)",
                ("latest_eta",),
            ),
            "eta_at = greatest(shipments.eta_at, excluded.eta_at)",
        ],
    ),
)

LOGS: dict[str, str] = {
    "carrier_events": "b_carrier_events",
    "route_alerts": "b_route_alerts",
    "dq_results": "b_dq_results",
    "dead_letters": "b_dead_letters",
}
"""Append-only tables and the staging frame each is filled from."""


def log_insert(table: str, frame: str) -> str:
    """Insert a staging frame into an append-only table, ignoring known ids."""
    return f"INSERT INTO {table} BY NAME SELECT * FROM {frame} ON CONFLICT DO NOTHING"


ORDER_LINE_SUMMARY = """
INSERT INTO orders (order_id, lines_decided, lines_first_full, lines_active, lines_current_full)
SELECT order_id,
       count(*) FILTER (WHERE decisions > 0),
       count(*) FILTER (WHERE first_outcome = 'allocated'),
       count(*) FILTER (WHERE decisions > 0 AND outcome <> 'cancelled'),
       count(*) FILTER (WHERE outcome = 'allocated')
FROM order_lines SEMI JOIN affected_orders USING (order_id)
GROUP BY order_id
ON CONFLICT (order_id) DO UPDATE SET lines_decided = excluded.lines_decided,
    lines_first_full = excluded.lines_first_full, lines_active = excluded.lines_active,
    lines_current_full = excluded.lines_current_full
"""

ORDER_SHIPMENT_SUMMARY = """
INSERT INTO orders (order_id, shipments, shipment_nodes, shipments_delivered,
                    first_dispatched_at, delivered_at)
SELECT order_id,
       count(*),
       count(DISTINCT node_id),
       count(*) FILTER (WHERE coalesce(delivered_at, carrier_delivered_at) IS NOT NULL),
       min(dispatched_at),
       CASE WHEN count(*) FILTER (WHERE coalesce(delivered_at, carrier_delivered_at) IS NULL) = 0
            THEN max(coalesce(delivered_at, carrier_delivered_at)) END
FROM shipments SEMI JOIN affected_orders USING (order_id)
GROUP BY order_id
ON CONFLICT (order_id) DO UPDATE SET shipments = excluded.shipments,
    shipment_nodes = excluded.shipment_nodes, shipments_delivered = excluded.shipments_delivered,
    first_dispatched_at = excluded.first_dispatched_at, delivered_at = excluded.delivered_at
"""

NOT_ALLOCATION_REASONS = (ReasonCode.ROUTE_DELAY_RISK, ReasonCode.DATA_QUALITY)
"""Exception reasons that are no allocation touch: route delays and bad data."""

ORDER_EXCEPTION_SUMMARY = f"""
INSERT INTO orders (order_id, exceptions_opened, exceptions_open, allocation_exceptions_opened)
SELECT order_id, count(*), count(*) FILTER (WHERE closed_at IS NULL),
       count(*) FILTER (WHERE reason_code NOT IN
                        ({", ".join(f"'{r.value}'" for r in NOT_ALLOCATION_REASONS)}))
FROM exceptions SEMI JOIN affected_orders USING (order_id)
GROUP BY order_id
ON CONFLICT (order_id) DO UPDATE SET exceptions_opened = excluded.exceptions_opened,
    exceptions_open = excluded.exceptions_open,
    allocation_exceptions_opened = excluded.allocation_exceptions_opened
"""

ORDER_SUMMARIES = (ORDER_LINE_SUMMARY, ORDER_SHIPMENT_SUMMARY, ORDER_EXCEPTION_SUMMARY)
"""Order columns recomputed from the order's lines, shipments and exceptions."""
