"""Exceptions queue: open exceptions by age, and the full story of one order."""

import polars as pl
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from allocflow.dashboards import data, ui
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


def _order_detail(db: str, order_id: str) -> None:
    order = data.load_order(db, order_id)
    if not order.summary.is_empty():
        row = order.summary.row(0, named=True)
        st.caption(
            f"{row['status']} · {row['region']} · {row['channel']} · {row['customer_tier']} · "
            f"{row['line_count']} lines, {row['allocated_qty']}/{row['requested_qty']} units "
            f"allocated · nodes {row['nodes'] or '—'}"
        )
    timeline, decisions, shipments = st.tabs(
        [
            f"Timeline ({order.timeline.height})",
            f"Decisions ({order.decisions.height})",
            f"Shipments ({order.shipments.height})",
        ]
    )
    timeline.dataframe(order.timeline, hide_index=True, width="stretch")
    decisions.dataframe(order.decisions, hide_index=True, width="stretch")
    shipments.dataframe(order.shipments, hide_index=True, width="stretch")


def _queue_table(exceptions: pl.DataFrame) -> None:
    st.dataframe(
        exceptions,
        hide_index=True,
        width="stretch",
        column_config={
            "age_hours": st.column_config.NumberColumn("age (h)", format="%.1f"),
            "opened_at": st.column_config.DatetimeColumn("opened", format="YYYY-MM-DD HH:mm"),
            "closed_at": st.column_config.DatetimeColumn("closed", format="YYYY-MM-DD HH:mm"),
        },
    )


def _queue(db: str, selection: Selection) -> None:
    queue = data.load_queue(db, selection, _queue_filters(data.load_options(db)))
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
