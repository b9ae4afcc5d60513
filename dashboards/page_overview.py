"""Operations overview: KPI tiles with their trend, and the KPIs over time."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from allocflow.dashboards import charts, data, ui
from allocflow.dashboards.queries import Selection


@dataclass(frozen=True)
class _Tile:
    """A KPI tile: a column of :func:`queries.overview_kpis`, shown as a rate or duration."""

    label: str
    column: str
    help: str
    duration: bool = False
    lower_is_better: bool = False

    def show(
        self, where: DeltaGenerator, kpis: dict[str, Any], previous: dict[str, Any] | None
    ) -> None:
        """Draw the tile in ``where``: the value over the window, the change since before."""
        value = kpis[self.column]
        before = None if previous is None else previous[self.column]
        text, delta = (
            (ui.duration(value), ui.duration_delta(value, before))
            if self.duration
            else (ui.rate(value), ui.rate_delta(value, before))
        )
        where.metric(
            self.label,
            text,
            delta,
            delta_color=ui.delta_color(value, before, lower_is_better=self.lower_is_better),
            delta_arrow=ui.delta_arrow(value, before),
            help=self.help,
            border=True,
        )


_TILES = (
    _Tile(
        "Line fill, first pass",
        "line_fill_rate_first_pass",
        "Lines fully allocated by their first decision / lines decided.",
    ),
    _Tile(
        "Line fill, current",
        "line_fill_rate_current",
        "Lines fully allocated now / lines not cancelled.",
    ),
    _Tile(
        "Order fill, first pass",
        "order_fill_rate_first_pass",
        "Orders whose every line was fully allocated on first pass / orders decided.",
    ),
    _Tile(
        "Cycle time p50",
        "cycle_p50_seconds",
        "Median time from placement to delivery, of orders placed in the window.",
        duration=True,
        lower_is_better=True,
    ),
    _Tile(
        "Cycle time p90",
        "cycle_p90_seconds",
        "90th percentile of the time from placement to delivery.",
        duration=True,
        lower_is_better=True,
    ),
    _Tile(
        "Split rate",
        "split_rate",
        "Orders allocated or shipped from more than one node / active orders.",
        lower_is_better=True,
    ),
    _Tile(
        "Touchless rate",
        "touchless_rate",
        "Orders fully allocated without any exception / orders decided.",
    ),
    _Tile(
        "On-time delivery",
        "on_time_delivery_rate",
        "Shipments delivered by their promised time / shipments delivered "
        "(the node filter applies).",
    ),
)
_PER_ROW = 5


def _tiles(overview: data.Overview) -> None:
    kpis = overview.kpis.row(0, named=True)
    previous = None if overview.previous_kpis is None else overview.previous_kpis.row(0, named=True)
    columns = [*st.columns(_PER_ROW), *st.columns(_PER_ROW)]
    for column, tile in zip(columns, _TILES, strict=False):
        tile.show(column, kpis, previous)
    columns[len(_TILES)].metric(
        "Open exceptions",
        f"{overview.open_exceptions:,}",
        ui.count_delta(overview.open_exceptions, overview.open_exceptions_before),
        delta_color=ui.delta_color(
            overview.open_exceptions, overview.open_exceptions_before, lower_is_better=True
        ),
        delta_arrow=ui.delta_arrow(overview.open_exceptions, overview.open_exceptions_before),
        help="Exceptions open at the newest landed event (region, channel and tier apply); "
        "the change is since the window's start.",
        border=True,
    )
    versus = ui.previous_label(overview.filters)
    if versus:
        st.caption(f"Changes: {versus}, by event time.")


def _chart_or_note(frame: pl.DataFrame, column: str, draw: Callable[[], Any], note: str) -> None:
    if frame.is_empty() or frame[column].null_count() == frame.height:
        st.info(note)
    else:
        st.altair_chart(draw(), width="stretch")


def _charts(overview: data.Overview) -> None:
    left, right = st.columns(2)
    grain = overview.grain
    with left:
        _chart_or_note(
            overview.fill_trend,
            "line_fill_rate_first_pass",
            lambda: charts.fill_rate(overview.fill_trend, grain),
            "No orders decided in this window.",
        )
        _chart_or_note(
            overview.split_trend,
            "split_rate",
            lambda: charts.split_rate(overview.split_trend, grain),
            "No active orders in this window.",
        )
    with right:
        _chart_or_note(
            overview.cycle_trend,
            "p50_seconds",
            lambda: charts.cycle_time(overview.cycle_trend, grain),
            "No order reached a cycle-time milestone in this window.",
        )
        _chart_or_note(
            overview.aging,
            "open_exceptions",
            lambda: charts.exception_aging(overview.aging),
            "No open exceptions.",
        )


@st.fragment(run_every=ui.REFRESH_S)
def _live(db: str, selection: Selection) -> None:
    try:
        overview = data.load_overview(db, selection)
    except data.DataUnavailableError as error:
        ui.unavailable(error)
        return
    if not ui.ready(overview.status):
        return
    ui.freshness(overview.status, overview.filters)
    _tiles(overview)
    _charts(overview)


st.title("Operations overview")
_context = ui.page_context()
_live(_context.db, _context.selection)
