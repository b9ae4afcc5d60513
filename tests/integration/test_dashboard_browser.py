"""The dashboard served by Streamlit, in a real headless Chromium, over the landed run.

Opens every page through the sidebar navigation, checks the key numbers on screen
against SQL over the landed file, and saves a screenshot of each page under the
test's temporary directory. With ``ALLOCFLOW_UPDATE_DOCS_SCREENSHOT=1`` it also
copies the overview's screenshot to ``docs/images/dashboard-overview.png`` (the
README shows it); a normal run leaves the working tree alone.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import polars as pl
import pytest
from playwright.sync_api import Page

from allocflow.connectors.landing.snapshot import snapshot_path
from allocflow.dashboards import queries
from allocflow.dashboards.queries import Filters
from allocflow.dashboards.server import StreamlitServer

pytestmark = pytest.mark.integration

DOCS_SCREENSHOT = Path(__file__).parents[2] / "docs" / "images" / "dashboard-overview.png"
UPDATE_DOCS_ENV = "ALLOCFLOW_UPDATE_DOCS_SCREENSHOT"
_TIMEOUT_MS = 20_000
_SCREEN = {"width": 1400, "height": 1200}


def _sql(db: Path, query: str) -> object:
    with duckdb.connect(str(db), read_only=True) as connection:
        rows = connection.execute(query).fetchall()
    return rows[0][0]


def _tile(page: Page, label: str) -> str:
    """The value shown by the metric labelled ``label``, once it is on screen."""
    metric = page.locator("[data-testid=stMetric]").filter(has_text=label)
    value = metric.locator("[data-testid=stMetricValue]")
    value.wait_for(timeout=_TIMEOUT_MS)
    return value.inner_text().strip()


def _open(page: Page, title: str) -> None:
    page.locator("[data-testid=stSidebarNavLink]").filter(has_text=title).click()
    page.get_by_role("heading", name=title).wait_for(timeout=_TIMEOUT_MS)


def _screenshot(page: Page, path: Path) -> None:
    """The whole page at 1400 px: the viewport grows to the height the app scrolls to."""
    height = page.evaluate(
        "Math.max(...[...document.querySelectorAll('[data-testid=stMain]')]"
        ".map(e => e.scrollHeight), 1200)"
    )
    page.set_viewport_size({"width": _SCREEN["width"], "height": int(height) + 100})
    page.screenshot(path=path, full_page=True)
    page.set_viewport_size(_SCREEN)


def _charts_drawn(page: Page, count: int) -> None:
    page.locator(".vega-embed canvas, .vega-embed svg").nth(count - 1).wait_for(timeout=_TIMEOUT_MS)


def test_every_page_shows_the_landed_numbers(
    browser_page: Page, landed_run: Path, tmp_path: Path
) -> None:
    db = landed_run / "allocflow.duckdb"
    line_fill = _sql(db, "SELECT sum(lines_first_full) / sum(lines_decided) FROM agg_line_fill")
    listed = _sql(db, "SELECT count(*) FROM exceptions WHERE closed_at IS NULL")
    dead_letters = _sql(db, "SELECT count(*) FROM dead_letters")
    with duckdb.connect(str(snapshot_path(db)), read_only=True) as connection:
        open_exceptions = queries.open_exceptions(connection, Filters()).item()  # operations'
        counts = queries.open_route_alert_counts(connection, Filters())
    open_at_risk = counts.filter(pl.col("kind") == "AT_RISK")["open_alerts"].item()
    assert isinstance(line_fill, float)
    errors: list[str] = []
    browser_page.on("pageerror", lambda error: errors.append(str(error)))

    with StreamlitServer(app_args=["--db", str(db)], log_path=tmp_path / "streamlit.log") as server:
        browser_page.set_viewport_size(_SCREEN)  # the page scrolls inside: show it whole
        browser_page.goto(server.url)
        assert _tile(browser_page, "Line fill, first pass") == f"{line_fill * 100:.1f}%"
        assert _tile(browser_page, "Open exceptions") == str(open_exceptions)
        _charts_drawn(browser_page, 3)
        _screenshot(browser_page, tmp_path / "overview.png")

        _open(browser_page, "Exceptions queue")
        assert _tile(browser_page, "Open exceptions listed") == str(listed)
        _screenshot(browser_page, tmp_path / "exceptions.png")

        _open(browser_page, "Carriers & routes")
        _charts_drawn(browser_page, 2)
        assert _tile(browser_page, "At risk") == str(open_at_risk)
        browser_page.get_by_text("Recent resolutions and late deliveries").wait_for(
            timeout=_TIMEOUT_MS
        )
        _screenshot(browser_page, tmp_path / "carriers.png")

        _open(browser_page, "Data quality")
        assert _tile(browser_page, "Dead letters") == f"{dead_letters:,}"
        _screenshot(browser_page, tmp_path / "quality.png")

    assert isinstance(dead_letters, int)
    assert dead_letters > 0
    assert not errors
    for name in ("overview", "exceptions", "carriers", "quality"):
        assert (tmp_path / f"{name}.png").stat().st_size > 20_000, name
    if os.environ.get(UPDATE_DOCS_ENV) == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "overview.png", DOCS_SCREENSHOT)


_HOLD_LOCK = """
import sys, time, duckdb
connection = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(120)
"""
"""Holds a DuckDB file's write lock, as the lander does before its first snapshot."""


def test_first_page_waits_for_the_first_snapshot_then_shows_it(
    browser_page: Page, landed_run: Path, tmp_path: Path
) -> None:
    db = tmp_path / "demo.duckdb"
    line_fill = _sql(
        landed_run / "allocflow.duckdb",
        "SELECT sum(lines_first_full) / sum(lines_decided) FROM agg_line_fill",
    )
    assert isinstance(line_fill, float)
    with StreamlitServer(app_args=["--db", str(db)], log_path=tmp_path / "streamlit.log") as server:
        browser_page.goto(server.url)
        browser_page.get_by_text("Waiting for the first snapshot: neither").wait_for(
            timeout=_TIMEOUT_MS
        )
        shutil.copy(landed_run / "allocflow.duckdb", db)
        lander = subprocess.Popen(
            [sys.executable, "-c", _HOLD_LOCK, str(db)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert lander.stdout is not None
            assert lander.stdout.readline() == "holding\n"
            browser_page.get_by_text("the lander is writing demo.duckdb").wait_for(
                timeout=_TIMEOUT_MS
            )
            shown_while_locked = browser_page.inner_text("body")
            published = tmp_path / "publishing"
            shutil.copy(landed_run / "allocflow.duckdb.snapshot", published)
            published.replace(db.with_name(db.name + ".snapshot"))  # as the lander publishes

            line_fill_tile = _tile(browser_page, "Line fill, first pass")
            browser_page.locator(
                "[data-testid=stSidebar] [data-testid=stMultiSelect]"
            ).first.click()
            browser_page.get_by_role("option", name="west", exact=True).wait_for(
                timeout=_TIMEOUT_MS
            )
        finally:
            lander.kill()
            lander.wait()

    assert line_fill_tile == f"{line_fill * 100:.1f}%"
    for raw in ("Could not set lock", "IO Error", "Traceback"):
        assert raw not in shown_while_locked
    assert "The page retries every 3 s." in shown_while_locked
