"""The dashboard served by Streamlit, in a real headless Chromium, over the landed run.

Opens every page through the sidebar navigation, checks the key numbers on screen
against SQL over the landed file, and saves a screenshot of each page under the
test's temporary directory. With ``ALLOCFLOW_UPDATE_DOCS_SCREENSHOT=1`` it also
copies the overview's screenshot to ``docs/images/dashboard-overview.png`` (the
README shows it); a normal run leaves the working tree alone.
"""

import os
import shutil
from pathlib import Path

import duckdb
import pytest
from playwright.sync_api import Page

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


def _charts_drawn(page: Page, count: int) -> None:
    page.locator(".vega-embed canvas, .vega-embed svg").nth(count - 1).wait_for(timeout=_TIMEOUT_MS)


def test_every_page_shows_the_landed_numbers(
    browser_page: Page, landed_run: Path, tmp_path: Path
) -> None:
    db = landed_run / "allocflow.duckdb"
    line_fill = _sql(db, "SELECT sum(lines_first_full) / sum(lines_decided) FROM agg_line_fill")
    open_exceptions = _sql(db, "SELECT count(*) FROM exceptions WHERE closed_at IS NULL")
    dead_letters = _sql(db, "SELECT count(*) FROM dead_letters")
    open_at_risk = _sql(db, "SELECT count(*) FROM open_route_alerts WHERE kind = 'AT_RISK'")
    assert isinstance(line_fill, float)
    errors: list[str] = []
    browser_page.on("pageerror", lambda error: errors.append(str(error)))

    with StreamlitServer(app_args=["--db", str(db)], log_path=tmp_path / "streamlit.log") as server:
        browser_page.set_viewport_size(_SCREEN)  # the page scrolls inside: show it whole
        browser_page.goto(server.url)
        assert _tile(browser_page, "Line fill, first pass") == f"{line_fill * 100:.1f}%"
        assert _tile(browser_page, "Open exceptions") == str(open_exceptions)
        _charts_drawn(browser_page, 3)
        browser_page.screenshot(path=tmp_path / "overview.png", full_page=True)

        _open(browser_page, "Exceptions queue")
        assert _tile(browser_page, "Open exceptions listed") == str(open_exceptions)
        browser_page.screenshot(path=tmp_path / "exceptions.png", full_page=True)

        _open(browser_page, "Carriers & routes")
        _charts_drawn(browser_page, 2)
        assert _tile(browser_page, "At risk") == str(open_at_risk)
        browser_page.get_by_text("Recent resolutions and late deliveries").wait_for(
            timeout=_TIMEOUT_MS
        )
        browser_page.screenshot(path=tmp_path / "carriers.png", full_page=True)

        _open(browser_page, "Data quality")
        assert _tile(browser_page, "Dead letters") == f"{dead_letters:,}"
        browser_page.screenshot(path=tmp_path / "quality.png", full_page=True)

    assert isinstance(dead_letters, int)
    assert dead_letters > 0
    assert not errors
    for name in ("overview", "exceptions", "carriers", "quality"):
        assert (tmp_path / f"{name}.png").stat().st_size > 20_000, name
    if os.environ.get(UPDATE_DOCS_ENV) == "1":
        DOCS_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "overview.png", DOCS_SCREENSHOT)
