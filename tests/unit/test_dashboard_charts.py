"""The dashboard's charts tell their series apart and label rates readably (Vega-Lite specs)."""

from datetime import datetime, timedelta
from typing import Any

import polars as pl
import pytest

from allocflow.dashboards import charts

pytestmark = pytest.mark.unit

_START = datetime(2026, 3, 2)


def _cycle_trend() -> pl.DataFrame:
    stages = ("placed_to_allocated", "placed_to_delivered")
    return pl.DataFrame(
        [
            {
                "period_start": _START + timedelta(hours=h),
                "stage": stage,
                "orders": 5,
                "p50_seconds": 3600.0 * (h + 1),
                "p90_seconds": 7200.0 * (h + 1),
            }
            for h in range(3)
            for stage in stages
        ]
    )


def _fill_trend() -> pl.DataFrame:
    rates = dict.fromkeys(
        (
            "line_fill_rate_first_pass",
            "line_fill_rate_current",
            "order_fill_rate_first_pass",
            "order_fill_rate_current",
        ),
        1.0,
    )
    return pl.DataFrame([{"period_start": _START + timedelta(hours=h), **rates} for h in range(3)])


def _spec(chart: Any) -> dict[str, Any]:
    spec: dict[str, Any] = chart.to_dict()
    return spec


def test_cycle_time_legend_draws_p50_and_p90_as_different_strokes() -> None:
    spec = _spec(charts.cycle_time(_cycle_trend(), "hour"))
    layers = spec.get("layer", [spec])
    dashed = [layer["encoding"] for layer in layers if "strokeDash" in layer["encoding"]]
    assert len(dashed) == 1
    encoding = dashed[0]
    # the legend comes from a line, not from points drawn on it (those would be dots)
    assert next(layer for layer in layers if "strokeDash" in layer["encoding"])["mark"] in (
        "line",
        {"type": "line"},
    )

    dash = encoding["strokeDash"]
    assert dash["field"] == "series"
    assert dash["scale"]["domain"] == ["p50", "p90"]
    solid, dashed = dash["scale"]["range"]
    assert solid != dashed
    assert dash["legend"]["symbolType"] == "stroke"  # not the default filled dot
    assert dash["legend"]["symbolStrokeColor"] != "black"
    assert encoding["color"]["field"] == "stage"


def test_cycle_time_stages_read_as_words() -> None:
    values = _spec(charts.cycle_time(_cycle_trend(), "hour"))["datasets"]
    stages = {row["stage"] for rows in values.values() for row in rows}

    assert stages == {"placed → allocated", "placed → delivered"}


def _rate_axes(spec: Any) -> list[str]:
    """Every axis format of a spec (and its layers) that formats a percentage."""
    found: list[str] = []
    if isinstance(spec, dict):
        axis = spec.get("axis")
        if isinstance(axis, dict) and str(axis.get("format", "")).endswith("%"):
            found.append(axis["format"])
        for value in spec.values():
            found += _rate_axes(value)
    elif isinstance(spec, list):
        for value in spec:
            found += _rate_axes(value)
    return found


def test_rate_axes_show_at_most_one_decimal() -> None:
    spec = _spec(charts.fill_rate(_fill_trend(), "hour"))

    # d3's bare "%" prints a constant 1.0 axis as "100.000000%"
    assert _rate_axes(spec) == [".1~%"]
