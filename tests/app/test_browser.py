"""Every dashboard page in a real browser (Debian's chromium, driven by Playwright), served by
`tradeloop dashboard` against real data: no Streamlit exception, the page's key content shows,
clearing a selector gives the empty state, and a full-page screenshot of each is kept
(``tests/app/browser.py`` says where). One server and one browser for the module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from tests.app.browser import (
    assert_no_exception,
    chromium,
    dashboard_env,
    dashboard_server,
    open_page,
    screenshot,
    wait_for_cell,
)

CHART = '[data-testid="stPlotlyChart"]'


@pytest.fixture(scope="module")
def served(dashboard_root: Path) -> Iterator[str]:
    with dashboard_server(dashboard_env(dashboard_root)) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    tab = browser.new_page(viewport={"width": 1400, "height": 1000})
    yield tab
    tab.close()


def test_live_sessions_page(served: str, page: Page) -> None:
    open_page(page, served, heading="Live sessions")
    assert_no_exception(page, "/")
    page.get_by_text("Last updated").first.wait_for()
    wait_for_cell(page, "paper-demo")
    for heading in ("Equity and drawdown", "Candles, entries and exits", "Positions", "Per symbol", "Decision source"):
        page.get_by_role("heading", name=heading).first.wait_for()
    assert page.locator(CHART).count() >= 2  # equity with drawdown, candles with the session's fills
    page.locator(f"{CHART} .js-plotly-plot").first.wait_for()
    assert page.get_by_text("Entries decided by").count() == 1
    screenshot(page, "live-sessions")


def test_performance_page(served: str, page: Page) -> None:
    open_page(page, f"{served}/performance", heading="Performance")
    assert_no_exception(page, "/performance")
    for text in ("live: paper-demo", "backtest, same terms", "research backtest", "of equity per new position"):
        page.get_by_text(text).first.wait_for()
    page.get_by_role("heading", name="Metrics").wait_for()
    page.locator(f"{CHART} .js-plotly-plot").first.wait_for()
    screenshot(page, "performance")


def test_performance_with_the_runs_selector_cleared(served: str, page: Page) -> None:
    open_page(page, f"{served}/performance", heading="Performance")
    runs = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Runs")
    runs.get_by_role("button", name="Clear all").click()
    page.get_by_text("Pick at least one run above to compare.").wait_for(timeout=30_000)
    assert_no_exception(page, "/performance with the runs cleared")
    assert page.locator(CHART).count() == 0
    screenshot(page, "performance-runs-cleared")


def test_champion_page(served: str, page: Page) -> None:
    open_page(page, f"{served}/champion", heading="Champion")
    assert_no_exception(page, "/champion")
    page.get_by_role("heading", name="sma_cross").wait_for()
    for text in ("training window", "data hash", "universe", "stale after", "Promotion gate", "History"):
        page.get_by_text(text).first.wait_for()
    screenshot(page, "champion")


def test_data_health_page(served: str, page: Page) -> None:
    open_page(page, f"{served}/data_health", heading="Data health")
    assert_no_exception(page, "/data_health")
    wait_for_cell(page, "coinbase:BTC-USD:4h")
    page.get_by_role("heading", name="Largest gaps").wait_for()
    page.locator(f"{CHART} .js-plotly-plot").first.wait_for()
    screenshot(page, "data-health")
