"""Exceptions queue: open exceptions by age, and the full story of one order."""

from typing import Any

import polars as pl
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from allocflow.dashboards import data, tables, ui
from allocflow.dashboards.queries import QueueFilters, Selection


def _queue_filters(options: data.Options) -> QueueFilters:
    def pick(column: DeltaGenerator, label: str, field: str) -> tuple[str, ...]:
        values = options.exception_values(field)
        return tuple(column.multiselect(label, values, key=f"queue_{field}", placeholder="All"))

    reason, owner, severity, closed = st.columns([3, 2, 2, 2], vertical_alignment="bottom")
    return QueueFilters(
        reasons=pick(reason, "Reason", "reason_code"),
        owners=pick(owner, "Owner", "owner_role"),
        severities=pick(severity, "Severity", "severity"),
        include_closed=closed.toggle(
            "Include recently closed",
            key="queue_closed",
            help="Closed exceptions stay in the published snapshot for a week.",
        ),
    )


def order_summary_text(row: dict[str, Any]) -> str:
    """One line on an order, as plain text: status, dimensions, lines, units, nodes.

    Example:
        >>> order_summary_text({"status": "ALLOCATED", "region": "west", "channel": "web",
        ...     "customer_tier": "gold", "line_count": 2, "allocated_qty": 3,
        ...     "requested_qty": 4, "nodes": None})
        'ALLOCATED · west · web · gold · 2 lines, 3/4 units allocated · nodes —'
    """
    words = [ui.plain(row[name]) for name in ("status", "region", "channel", "customer_tier")]
    return (
        f"{' · '.join(words)} · {row['line_count']} lines, "
        f"{row['allocated_qty']}/{row['requested_qty']} units allocated · "
        f"nodes {ui.plain(row['nodes'])}"
    )


_TIMELINE_ORDER = ("occurred_at", "source", "event", "ref", "detail")
_DECISION_ORDER = (
    "decided_at",
    "line_id",
    "sku",
    "rule",
    "outcome",
    "explanation",
    "allocations",
    "requested_qty",
    "allocated_qty",
    "backordered_qty",
    "reason_code",
    "candidates",
    "policy_version",
    "decision_id",
)


def _order_detail(db: str, order_id: str) -> None:
    order = data.load_order(db, order_id)
    if not order.summary.is_empty():
        st.text(order_summary_text(order.summary.row(0, named=True)))
    timeline, decisions, shipments = st.tabs(
        [
            f"Timeline ({order.timeline.height})",
            f"Decisions ({order.decisions.height})",
            f"Shipments ({order.shipments.height})",
        ]
    )
    tables.show(order.timeline, where=timeline, order=_TIMELINE_ORDER, wrap=True)
    tables.show(order.decisions, where=decisions, order=_DECISION_ORDER, wrap=True)
    tables.show(order.shipments, where=shipments)


_DETAIL_PX = 520
_QUEUE_ORDER = (  # what to work on first, then where it sits, then the rest
    "age_hours",
    "reason_code",
    "detail",
    "order_id",
    "line_id",
    "severity",
    "owner_role",
    "opened_at",
    "status",
    "closed_at",
    "resolution",
    "region",
    "channel",
    "customer_tier",
    "exception_id",
)


def _queue_table(exceptions: pl.DataFrame) -> None:
    tables.show(
        exceptions,
        order=_QUEUE_ORDER,
        wrap=True,
        overrides={
            "age_hours": st.column_config.NumberColumn(
                "age", format="%.1f h", help="Open until the watermark, or until closed."
            ),
            "opened_at": st.column_config.DatetimeColumn("opened", format=tables.TIMESTAMP),
            "closed_at": st.column_config.DatetimeColumn("closed", format=tables.TIMESTAMP),
            "severity": st.column_config.Column("severity", width="small"),
            "owner_role": st.column_config.Column("owner", width="small"),
            "line_id": st.column_config.Column("line", width="small"),
            "detail": st.column_config.TextColumn(
                "detail", width=_DETAIL_PX, help=tables.EXPLAINING["detail"]
            ),
        },
    )


def _queue(db: str, selection: Selection) -> None:
    queue = data.load_queue(db, selection, _queue_filters(data.load_options(db)))
    if not ui.ready(queue.status):
        return
    ui.freshness(queue.status)
    exceptions = queue.exceptions
    opened = exceptions.filter(pl.col("status") == "open").height
    st.metric("Open exceptions listed", f"{opened:,}")
    if exceptions.is_empty():
        st.info("No exceptions match. Include the recently closed ones to look back.")
        return
    _queue_table(exceptions)
    st.subheader("Order timeline")
    orders = exceptions["order_id"].unique(maintain_order=True).to_list()
    order_id = st.selectbox("Order", orders, key="order")
    if order_id is not None:
        _order_detail(db, order_id)


@st.fragment(run_every=ui.REFRESH_S)
def _live(db: str, selection: Selection) -> None:
    try:
        _queue(db, selection)
    except data.DataUnavailableError as error:
        ui.unavailable(error)


st.title("Exceptions queue")
st.caption(
    "Age is the time open until the newest landed event (the watermark), or until closing. "
    "Region, channel and tier filters apply; the time range does not."
)
_context = ui.page_context()
_live(_context.db, _context.selection)
