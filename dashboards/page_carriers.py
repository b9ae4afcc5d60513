"""Carriers & routes: on-time dispatch, delivery and OTIF by carrier and lane; route alerts."""

import polars as pl
import streamlit as st

from allocflow.dashboards import charts, data, ui
from allocflow.dashboards.queries import Selection

_RATE_COLUMNS = {
    column: st.column_config.NumberColumn(label, format="percent")
    for column, label in (
        ("on_time_dispatch_rate", "on-time dispatch"),
        ("on_time_delivery_rate", "on-time delivery"),
        ("otif_rate", "OTIF"),
    )
}


def _breakdown(rates: pl.DataFrame, by: str, title: str) -> None:
    st.subheader(title)
    if rates.is_empty():
        st.info("No shipments created in this window.")
        return
    table, chart = st.columns(2)
    table.dataframe(
        rates,
        hide_index=True,
        width="stretch",
        column_config=_RATE_COLUMNS,
        column_order=[by, "shipments", *_RATE_COLUMNS, "dispatched", "delivered"],
    )
    chart.altair_chart(charts.on_time(rates, by, title), width="stretch")


def _alerts(alerts: pl.DataFrame) -> None:
    st.subheader("Route alerts")
    if alerts.is_empty():
        st.info("No route alerts landed yet.")
        return
    st.dataframe(alerts, hide_index=True, width="stretch")


@st.fragment(run_every=ui.REFRESH_S)
def _live(db: str, selection: Selection) -> None:
    try:
        carriers = data.load_carriers(db, selection)
    except data.DataUnavailableError as error:
        ui.unavailable(error)
        return
    ui.freshness(carriers.status, carriers.filters)
    _breakdown(carriers.by_carrier, "carrier_id", "By carrier")
    _breakdown(carriers.by_lane, "lane", "By lane")
    _alerts(carriers.alerts)


st.title("Carriers & routes")
st.caption(
    "Shipments by creation hour; the node and time range filters apply, region, channel "
    "and tier do not. A rate is its on-time count / shipments dispatched (or delivered)."
)
_context = ui.page_context()
_live(_context.db, _context.selection)
