"""Staging frames: a batch's rows as typed polars frames, reduced to one row per key.

DuckDB's ``INSERT … ON CONFLICT`` keeps the *first* of several rows with the same
key in one statement, so every frame is reduced here with the frame's own merge
rule (earliest time, latest version, lowest and highest offset…) before it reaches
SQL. Frames are typed explicitly so that an all-null column keeps its SQL type.
"""

from collections.abc import Mapping

import polars as pl

from allocflow.connectors.landing.records import Row

_TIME = pl.Datetime("us")
_ALLOCATIONS = pl.List(pl.Struct({"node_id": pl.String, "qty": pl.Int64}))
_CANDIDATES = pl.List(
    pl.Struct(
        {
            "node_id": pl.String,
            "rank": pl.Int64,
            "available_qty": pl.Int64,
            "rejected_reason": pl.String,
        }
    )
)
QUANTITY_SUM = pl.Decimal(38, 0)
"""A sum of quantities in a batch: exact (an ``Int64`` sum wraps around silently); it lands
in a ``HUGEINT`` column."""
_ERRORS = pl.List(pl.Struct({"field": pl.String, "message": pl.String, "value": pl.String}))

SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "input_events": {
        "event_id": pl.String(),
        "topic": pl.String(),
        "event_type": pl.String(),
        "event_time": _TIME,
        "source": pl.String(),
        "ingested_at": _TIME,
        "order_id": pl.String(),
        "shipment_id": pl.String(),
        "customer_id": pl.String(),
        "sku": pl.String(),
        "node_id": pl.String(),
        "detail": pl.String(),
    },
    "placed": {
        "topic": pl.String(),
        "event_id": pl.String(),
        "order_id": pl.String(),
        "customer_id": pl.String(),
        "customer_tier": pl.String(),
        "channel": pl.String(),
        "region": pl.String(),
        "placed_at": _TIME,
        "promised_date": _TIME,
        "line_count": pl.Int32(),
    },
    "placed_lines": {
        "topic": pl.String(),
        "event_id": pl.String(),
        "order_id": pl.String(),
        "line_id": pl.String(),
        "sku": pl.String(),
        "ordered_qty": pl.Int64(),
        "unit_price": pl.Float64(),
        "placed_at": _TIME,
        "region": pl.String(),
        "channel": pl.String(),
        "customer_tier": pl.String(),
    },
    "cancelled": {
        "topic": pl.String(),
        "event_id": pl.String(),
        "order_id": pl.String(),
        "cancelled_at": _TIME,
    },
    "shipments": {
        "topic": pl.String(),
        "event_id": pl.String(),
        "shipment_id": pl.String(),
        "order_id": pl.String(),
        "node_id": pl.String(),
        "carrier_id": pl.String(),
        "lane": pl.String(),
        "dispatch_cutoff": _TIME,
        "promised_delivery": _TIME,
        "units": pl.Int64(),
        "created_at": _TIME,
        "picked_at": _TIME,
        "dispatched_at": _TIME,
        "delivered_at": _TIME,
        "carrier_delivered_at": _TIME,
        "short_units": pl.Int64(),
        "tracking_no": pl.String(),
        "first_scan_at": _TIME,
        "last_scan_at": _TIME,
        "scans": pl.Int64(),
        "latest_eta": _TIME,
        "eta_at": _TIME,
    },
    "carrier_events": {
        "topic": pl.String(),
        "event_id": pl.String(),
        "shipment_id": pl.String(),
        "carrier_id": pl.String(),
        "event_type": pl.String(),
        "event_time": _TIME,
        "location": pl.String(),
        "eta": _TIME,
        "code": pl.String(),
        "description": pl.String(),
    },
    "decisions": {
        "decision_id": pl.String(),
        "order_id": pl.String(),
        "line_id": pl.String(),
        "sku": pl.String(),
        "customer_id": pl.String(),
        "decided_at": _TIME,
        "cause_event_id": pl.String(),
        "policy_version": pl.String(),
        "rule": pl.String(),
        "outcome": pl.String(),
        "requested_qty": pl.Int64(),
        "allocated_qty": pl.Int64(),
        "backordered_qty": pl.Int64(),
        "allocations": _ALLOCATIONS,
        "candidates": _CANDIDATES,
        "reason_code": pl.String(),
        "explanation": pl.String(),
        "source_partition": pl.Int32(),
        "source_offset": pl.Int64(),
        "produced_at": _TIME,
    },
    "statuses": {
        "order_id": pl.String(),
        "customer_id": pl.String(),
        "status_version": pl.Int64(),
        "status": pl.String(),
        "status_as_of": _TIME,
        "requested_qty": pl.Int64(),
        "allocated_qty": pl.Int64(),
        "split_count": pl.Int64(),
        "nodes": pl.List(pl.String()),
        "source_offset": pl.Int64(),
    },
    "exceptions": {
        "exception_id": pl.String(),
        "order_id": pl.String(),
        "line_id": pl.String(),
        "reason_code": pl.String(),
        "severity": pl.String(),
        "owner_role": pl.String(),
        "opened_at": _TIME,
        "closed_at": _TIME,
        "resolution": pl.String(),
        "detail": pl.String(),
        "opened_by_event_id": pl.String(),
        "closed_by_event_id": pl.String(),
    },
    "route_alerts": {
        "alert_id": pl.String(),
        "kind": pl.String(),
        "severity": pl.String(),
        "carrier_id": pl.String(),
        "lane": pl.String(),
        "shipment_id": pl.String(),
        "order_id": pl.String(),
        "detected_at": _TIME,
        "promised_delivery": _TIME,
        "expected_delivery": _TIME,
        "resolves_alert_id": pl.String(),
        "detail": pl.String(),
    },
    "dq_results": {
        "result_id": pl.String(),
        "origin": pl.String(),
        "check_name": pl.String(),
        "feed": pl.String(),
        "severity": pl.String(),
        "success": pl.Boolean(),
        "event_id": pl.String(),
        "detected_at": _TIME,
        "element_count": pl.Int64(),
        "unexpected_count": pl.Int64(),
        "detail": pl.String(),
        "sample": pl.String(),
    },
    "dead_letters": {
        "dead_letter_id": pl.String(),
        "source_topic": pl.String(),
        "source_partition": pl.Int64(),
        "source_offset": pl.Int64(),
        "message_key": pl.String(),
        "source_timestamp": _TIME,
        "event_id": pl.String(),
        "reason_code": pl.String(),
        "reason": pl.String(),
        "errors": _ERRORS,
        "raw": pl.Binary(),
        "landed_from": pl.String(),
        "dead_lettered_at": _TIME,
    },
}

_UNIQUE_KEYS = {
    "input_events": ["topic", "event_id"],
    "carrier_events": ["event_id"],
    "decisions": ["decision_id"],
    "route_alerts": ["alert_id"],
    "dq_results": ["result_id"],
    "dead_letters": ["dead_letter_id"],
}


def typed_frames(frames: Mapping[str, list[Row]]) -> dict[str, pl.DataFrame]:
    """Every staging frame, typed (empty frames included), deduplicated by id."""
    typed = {
        name: pl.DataFrame(frames.get(name, []), schema=schema) for name, schema in SCHEMAS.items()
    }
    for name, key in _UNIQUE_KEYS.items():
        typed[name] = typed[name].unique(subset=key, keep="first", maintain_order=True)
    return typed


def placed_orders(placed: pl.DataFrame) -> pl.DataFrame:
    """One ``order.placed`` per order: the earliest."""
    return placed.sort("placed_at").unique(subset=["order_id"], keep="first", maintain_order=True)


def placed_lines(lines: pl.DataFrame) -> pl.DataFrame:
    """One placed line per order line: the earliest."""
    return lines.sort("placed_at").unique(
        subset=["order_id", "line_id"], keep="first", maintain_order=True
    )


def cancellations(cancelled: pl.DataFrame) -> pl.DataFrame:
    """The earliest cancellation per order."""
    return cancelled.group_by("order_id").agg(pl.col("cancelled_at").min())


def order_statuses(statuses: pl.DataFrame) -> pl.DataFrame:
    """Per order: the highest-version status, plus first-decided and first-allocated times."""
    latest = statuses.sort("status_version").unique(
        subset=["order_id"], keep="last", maintain_order=True
    )
    times = statuses.group_by("order_id").agg(
        pl.col("status_as_of").min().alias("first_decided_at"),
        pl.col("status_as_of").filter(pl.col("status") == "allocated").min().alias("allocated_at"),
    )
    return latest.drop("source_offset").join(times, on="order_id", how="left")


_FIRST_COLUMNS = {
    "decision_id": "first_decision_id",
    "source_offset": "first_offset",
    "decided_at": "first_decided_at",
    "outcome": "first_outcome",
    "requested_qty": "first_requested_qty",
    "allocated_qty": "first_allocated_qty",
}
_CURRENT_COLUMNS = {
    "decision_id": "decision_id",
    "source_offset": "last_offset",
    "decided_at": "decided_at",
    "outcome": "outcome",
    "requested_qty": "requested_qty",
    "allocated_qty": "allocated_qty",
    "backordered_qty": "backordered_qty",
    "reason_code": "reason_code",
    "allocations": "allocations",
}


def line_decisions(decisions: pl.DataFrame) -> pl.DataFrame:
    """Per order line: how many new decisions, the first one and the latest one (by offset)."""
    ordered = decisions.sort("source_offset")
    return ordered.group_by(["order_id", "line_id"], maintain_order=True).agg(
        pl.col("sku").first(),
        pl.len().cast(pl.Int32).alias("decisions"),
        *[pl.col(src).first().alias(dst) for src, dst in _FIRST_COLUMNS.items()],
        *[pl.col(src).last().alias(dst) for src, dst in _CURRENT_COLUMNS.items()],
    )


def exceptions(records: pl.DataFrame) -> pl.DataFrame:
    """One row per exception: its open and close records merged (first non-null wins)."""
    columns = [c for c in records.columns if c != "exception_id"]
    return records.group_by("exception_id", maintain_order=True).agg(
        [pl.col(c).drop_nulls().first() for c in columns]
    )


SHIPMENT_FIRST = (
    "order_id",
    "node_id",
    "carrier_id",
    "lane",
    "dispatch_cutoff",
    "promised_delivery",
    "units",
    "tracking_no",
)
"""Shipment columns whose first known value wins."""
SHIPMENT_EARLIEST = (
    "created_at",
    "picked_at",
    "dispatched_at",
    "delivered_at",
    "carrier_delivered_at",
    "first_scan_at",
)
"""Shipment times whose earliest value wins."""


def shipments(events: pl.DataFrame) -> pl.DataFrame:
    """One row per shipment from its events in the batch."""
    return events.group_by("shipment_id", maintain_order=True).agg(
        *[pl.col(c).drop_nulls().first() for c in SHIPMENT_FIRST],
        *[pl.col(c).min() for c in SHIPMENT_EARLIEST],
        pl.col("last_scan_at").max(),
        pl.col("short_units").cast(QUANTITY_SUM).sum(),
        pl.col("scans").sum(),
        pl.col("latest_eta").sort_by("eta_at").last(),
        pl.col("eta_at").max(),
    )
