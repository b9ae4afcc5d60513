"""Carriers & routes: on-time rates by carrier and lane, transit times, route alerts."""

import polars as pl
import streamlit as st

from allocflow.dashboards import charts, data, tables, ui
from allocflow.dashboards.queries import Selection

_RATE_COLUMNS = {
    column: st.column_config.NumberColumn(label, format="percent", width="small", help=help)
    for column, label, help in (
        ("on_time_dispatch_rate", "dispatch", "Dispatched by the cutoff / dispatched."),
        ("on_time_delivery_rate", "delivery", "Delivered by the promise / delivered."),
        ("otif_rate", "OTIF", "Delivered on time and in full / delivered."),
    )
}
_COUNT_COLUMNS = {
    column: st.column_config.NumberColumn(column, width="small")
    for column in ("shipments", "dispatched", "delivered")
}
_HOURS = {
    "hours_late": st.column_config.NumberColumn(
        "late by", format="%.1f h", help="Expected delivery minus the promise."
    ),
    "hours_open": st.column_config.NumberColumn(
        "open for", format="%.1f h", help="How long the resolved alert was open."
    ),
}
_ALERT_ORDER = (
    "detected_at",
    "kind",
    "resolved_kind",
    "hours_open",
    "hours_late",
    "severity",
    "detail",
    "carrier_id",
    "lane",
    "shipment_id",
    "order_id",
    "promised_delivery",
    "expected_delivery",
    "alert_id",
    "resolves_alert_id",
)
_ALL_LANES = "All lanes"
_NO_ALERTS = "No route alerts landed yet."


def _breakdown(rates: pl.DataFrame, by: str, title: str) -> None:
    st.subheader(title)
    if rates.is_empty():
        st.info("No shipments created in this window.")
        return
    table, chart = st.columns([2, 1])
    tables.show(
        rates,
        where=table,
        overrides={**_RATE_COLUMNS, **_COUNT_COLUMNS},
        order=[by, "shipments", *_RATE_COLUMNS, "dispatched", "delivered"],
    )
    chart.altair_chart(charts.on_time(rates, by, title), width="stretch")


def _transit(db: str, selection: Selection, lanes: list[str]) -> None:
    st.subheader("Transit time")
    lane = st.selectbox("Lane", [_ALL_LANES, *lanes], key="transit_lane")
    transit = data.load_transit(db, selection, None if lane == _ALL_LANES else lane)
    if transit.distribution.is_empty():
        st.info("No shipments delivered in this window.")
        return
    st.altair_chart(charts.transit_time(transit.distribution, transit.percentiles))
    st.caption(
        "Dispatch to delivery of delivered shipments created in the window; bars are "
        "each carrier's share of its shipments, rules its p50 and p90 (histogram estimates, "
        "at most 4.4 % high)."
    )


def _alerts(carriers: data.Carriers) -> None:
    st.subheader("Open route alerts")
    if carriers.alerts_landed == 0:
        st.info(_NO_ALERTS)
        return
    counts = carriers.open_counts
    for column, row in zip(st.columns(counts.height), counts.iter_rows(named=True), strict=True):
        column.metric(row["kind"].replace("_", " ").capitalize(), row["open_alerts"])
    if carriers.open_alerts.is_empty():
        st.success("No route alert is open.")
    else:
        _alert_table(carriers.open_alerts)
    st.subheader("Recent resolutions and late deliveries")
    if carriers.outcomes.is_empty():
        st.info("No route alert resolved and no late delivery yet.")
        return
    _alert_table(carriers.outcomes)


def _alert_table(alerts: pl.DataFrame) -> None:
    order = [column for column in _ALERT_ORDER if column in alerts.columns]
    tables.show(alerts, overrides=_HOURS, order=order)


@st.fragment(run_every=ui.REFRESH_S)
def _live(db: str, selection: Selection) -> None:
    try:
        carriers = data.load_carriers(db, selection)
    except data.DataUnavailableError as error:
        ui.unavailable(error)
        return
    if not ui.ready(carriers.status):
        return
    ui.freshness(carriers.status, carriers.filters)
    _alerts(carriers)
    _breakdown(carriers.by_carrier, "carrier_id", "By carrier")
    _breakdown(carriers.by_lane, "lane", "By lane")
    try:
        _transit(db, selection, carriers.by_lane["lane"].drop_nulls().to_list())
    except data.DataUnavailableError as error:
        ui.unavailable(error)


st.title("Carriers & routes")
st.caption(
    "Shipments by creation hour; the node and time range filters apply, region, channel "
    "and tier do not. A rate is its on-time count / shipments dispatched (or delivered). "
    "Route alerts: the node filter applies to each lane's origin node; open alerts are "
    "open now, whatever the time range."
)
_context = ui.page_context()
_live(_context.db, _context.selection)
