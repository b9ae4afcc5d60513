"""Altair charts of the dashboard's frames; each function only shapes and draws."""

import altair as alt
import polars as pl

from allocflow.connectors.landing.kpi_views import AGE_BUCKETS
from allocflow.dashboards.queries import Grain

_HEIGHT = 260
_FILL_SERIES = {
    "line_fill_rate_first_pass": "Line fill, first pass",
    "line_fill_rate_current": "Line fill, current",
    "order_fill_rate_first_pass": "Order fill, first pass",
    "order_fill_rate_current": "Order fill, current",
}
_PERCENT_AXIS = ".1~%"
"""Axis labels of a rate: at most one decimal, none when whole (never "100.000000%")."""
_UNDER = alt.Legend(orient="bottom", direction="vertical")
"""A legend under a narrow chart, so that the plot keeps its width."""
_ON_TIME_SERIES = {
    "on_time_dispatch_rate": "On-time dispatch",
    "on_time_delivery_rate": "On-time delivery",
    "otif_rate": "OTIF",
}


def _time_axis(grain: Grain) -> alt.X:
    fmt = "%m-%d %H:%M" if grain == "hour" else "%Y-%m-%d"
    return alt.X("period_start:T", title=None, axis=alt.Axis(format=fmt, labelAngle=0))


def _long(frame: pl.DataFrame, index: list[str], series: dict[str, str], name: str) -> pl.DataFrame:
    """Unpivot ``series`` columns into ``series`` labels and ``name`` values."""
    return (
        frame.unpivot(on=list(series), index=index, variable_name="series", value_name=name)
        .with_columns(pl.col("series").replace_strict(series))
        .drop_nulls(name)
    )


def fill_rate(trend: pl.DataFrame, grain: Grain) -> alt.Chart:
    """Line and order fill rates over time, one line per rate."""
    rates = _long(trend, ["period_start"], _FILL_SERIES, "rate")
    chart: alt.Chart = (
        alt.Chart(rates)
        .mark_line(point=True)
        .encode(
            x=_time_axis(grain),
            y=alt.Y(
                "rate:Q",
                title="fill rate",
                axis=alt.Axis(format=_PERCENT_AXIS),
                scale=alt.Scale(zero=False),
            ),
            color=alt.Color("series:N", title=None, sort=list(_FILL_SERIES.values())),
            tooltip=["period_start:T", "series:N", alt.Tooltip("rate:Q", format=".1%")],
        )
        .properties(height=_HEIGHT, title="Fill rate")
    )
    return chart


_PERCENTILE_DASHES = {"p50": [1, 0], "p90": [6, 4]}
"""Solid p50, dashed p90: the line style tells the percentile, the colour the stage."""


def cycle_time(trend: pl.DataFrame, grain: Grain) -> alt.LayerChart:
    """p50 and p90 cycle time per stage over time, in hours.

    The colour is the stage, the line's dash the percentile (solid p50, dashed p90).
    Lines and points are separate layers so that the percentile legend is drawn
    from the lines, as grey solid and dashed strokes (a line with ``point=True``
    draws it from the points: the same black dot for both), under the chart.
    """
    hours = _long(
        trend, ["period_start", "stage"], {"p50_seconds": "p50", "p90_seconds": "p90"}, "seconds"
    ).with_columns(
        (pl.col("seconds") / 3600).alias("hours"),
        pl.col("stage").str.replace("_to_", " → ", literal=True).str.replace_all("_", " "),
    )
    base = alt.Chart(hours).encode(
        x=_time_axis(grain),
        y=alt.Y("hours:Q", title="hours"),
        color=alt.Color("stage:N", title="stage"),
        tooltip=[
            alt.Tooltip("period_start:T", title="period"),
            "stage:N",
            alt.Tooltip("series:N", title="percentile"),
            alt.Tooltip("hours:Q", format=".1f"),
        ],
    )
    percentiles = list(_PERCENTILE_DASHES)
    lines = base.mark_line().encode(
        strokeDash=alt.StrokeDash(
            "series:N",
            title="percentile",
            scale=alt.Scale(domain=percentiles, range=list(_PERCENTILE_DASHES.values())),
            legend=alt.Legend(
                symbolType="stroke",
                symbolStrokeColor="gray",
                symbolStrokeWidth=2,
                symbolSize=400,
                orient="bottom",
                direction="horizontal",
            ),
        )
    )
    points = base.mark_point(filled=True, size=25).encode(detail="series:N")
    return alt.LayerChart(
        layer=[lines, points], height=_HEIGHT, title="Cycle time p50 / p90 by stage"
    )


def split_rate(trend: pl.DataFrame, grain: Grain) -> alt.Chart:
    """Split rate over time, with the orders behind each point in the tooltip."""
    chart: alt.Chart = (
        alt.Chart(trend.drop_nulls("split_rate"))
        .mark_area(opacity=0.5, line=True, point=True)
        .encode(
            x=_time_axis(grain),
            y=alt.Y("split_rate:Q", title="split rate", axis=alt.Axis(format=_PERCENT_AXIS)),
            tooltip=[
                "period_start:T",
                alt.Tooltip("split_rate:Q", format=".1%"),
                "orders_split:Q",
                "orders_active:Q",
            ],
        )
        .properties(height=_HEIGHT, title="Split rate")
    )
    return chart


def exception_aging(aging: pl.DataFrame) -> alt.Chart:
    """Open exceptions per age bucket, stacked by reason code."""
    chart: alt.Chart = (
        alt.Chart(aging)
        .mark_bar()
        .encode(
            x=alt.X(
                "age_bucket:N",
                title="age",
                sort=[label for label, _ in AGE_BUCKETS],
                axis=alt.Axis(labelAngle=0),
            ),
            y=alt.Y("open_exceptions:Q", title="open exceptions"),
            color=alt.Color("reason_code:N", title="reason"),
            tooltip=[
                "reason_code:N",
                "age_bucket:N",
                "open_exceptions:Q",
                alt.Tooltip("oldest_hours:Q", title="oldest (h)", format=".1f"),
            ],
        )
        .properties(height=_HEIGHT, title="Open exceptions by age")
    )
    return chart


def on_time(rates: pl.DataFrame, by: str, title: str) -> alt.Chart:
    """On-time dispatch, delivery and OTIF per ``by`` value, as a dot plot."""
    long = _long(rates, [by, "shipments"], _ON_TIME_SERIES, "rate")
    chart: alt.Chart = (
        alt.Chart(long)
        .mark_point(filled=True, size=90, opacity=0.85)
        .encode(
            y=alt.Y(f"{by}:N", title=None),
            x=alt.X(
                "rate:Q",
                title=None,
                axis=alt.Axis(format=_PERCENT_AXIS),
                scale=alt.Scale(zero=False),
            ),
            color=alt.Color(
                "series:N", title=None, sort=list(_ON_TIME_SERIES.values()), legend=_UNDER
            ),
            shape=alt.Shape(
                "series:N", title=None, sort=list(_ON_TIME_SERIES.values()), legend=_UNDER
            ),
            tooltip=[f"{by}:N", "series:N", alt.Tooltip("rate:Q", format=".1%"), "shipments:Q"],
        )
        .properties(title=title)
    )
    return chart


def dead_letters(counts: pl.DataFrame) -> alt.Chart:
    """Dead letters per source topic, stacked by reason code."""
    chart: alt.Chart = (
        alt.Chart(counts)
        .mark_bar()
        .encode(
            y=alt.Y("source_topic:N", title=None),
            x=alt.X("dead_letters:Q", title="dead letters"),
            color=alt.Color("reason_code:N", title="reason"),
            tooltip=["source_topic:N", "reason_code:N", "dead_letters:Q"],
        )
        .properties(title="Dead letters by topic and reason")
    )
    return chart


def gx_pass_rate(rates: pl.DataFrame) -> alt.Chart:
    """Great Expectations pass rate per table over the runs, one line per table."""
    chart: alt.Chart = (
        alt.Chart(rates)
        .mark_line(point=True)
        .encode(
            x=alt.X("detected_at:T", title="run (watermark)"),
            y=alt.Y(
                "pass_rate:Q", title="expectations passed", axis=alt.Axis(format=_PERCENT_AXIS)
            ),
            color=alt.Color("feed:N", title="table"),
            tooltip=[
                "detected_at:T",
                "feed:N",
                alt.Tooltip("pass_rate:Q", format=".1%"),
                "passed:Q",
                "expectations:Q",
            ],
        )
        .properties(height=_HEIGHT, title="Expectation pass rate per table")
    )
    return chart


def stream_alerts(alerts: pl.DataFrame) -> alt.Chart:
    """In-stream alerts per hour, stacked by check, one row of bars per feed."""
    chart: alt.Chart = (
        alt.Chart(alerts)
        .mark_bar()
        .encode(
            x=alt.X(
                "hour:T",
                title="hour (event time)",
                axis=alt.Axis(format="%m-%d %H:%M", labelAngle=0),
            ),
            y=alt.Y("alerts:Q", title="alerts"),
            color=alt.Color("check_name:N", title="check"),
            row=alt.Row("feed:N", title=None),
            tooltip=["hour:T", "feed:N", "check_name:N", "alerts:Q"],
        )
        .properties(width=680, height=_HEIGHT // 3, title="In-stream alerts per hour")
    )
    return chart


def transit_time(distribution: pl.DataFrame, percentiles: pl.DataFrame) -> alt.FacetChart:
    """Histogram of transit hours per carrier (one row each, log hours), p50 and p90 as rules."""
    marks = _long(
        percentiles, ["carrier_id"], {"p50_seconds": "p50", "p90_seconds": "p90"}, "seconds"
    ).with_columns((pl.col("seconds") / 3600).alias("hours"))
    layers = pl.concat(
        [distribution.with_columns(pl.lit("bin").alias("series")), marks.drop("seconds")],
        how="diagonal",
    )
    hours = alt.X(
        "lower_hours:Q",
        title="transit hours (dispatch → delivery)",
        scale=alt.Scale(type="log", nice=False),
    )
    bars = (
        alt.Chart()
        .transform_filter(alt.datum.series == "bin")
        .mark_bar(opacity=0.75)
        .encode(
            x=hours,
            x2="upper_hours:Q",
            y=alt.Y("share:Q", title="share", axis=alt.Axis(format=_PERCENT_AXIS)),
            y2=alt.datum(0),
            tooltip=[
                "carrier_id:N",
                alt.Tooltip("lower_hours:Q", format=".1f", title="from hours"),
                alt.Tooltip("upper_hours:Q", format=".1f", title="to hours"),
                "shipments:Q",
                alt.Tooltip("share:Q", format=".1%"),
            ],
        )
    )
    rules = (
        alt.Chart()
        .transform_filter(alt.datum.series != "bin")
        .mark_rule(strokeWidth=2)
        .encode(
            x="hours:Q",
            color=alt.Color("series:N", title=None, scale=alt.Scale(range=["#e45756", "#4c78a8"])),
            tooltip=["carrier_id:N", "series:N", alt.Tooltip("hours:Q", format=".1f")],
        )
    )
    chart: alt.FacetChart = (
        alt.layer(bars, rules, data=layers)
        .properties(width=620, height=70)
        .facet(row=alt.Row("carrier_id:N", title=None, header=alt.Header(labelAngle=0)))
        .properties(title="Transit time by carrier")
    )
    return chart
