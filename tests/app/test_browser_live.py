"""The live page watched in a real browser: after the engine processes one more bar of a
paper session (in this process, writing the database the dashboard reads), the page shows
the new bar by itself, with no reload (the auto-refresh fragment); a dashboard on an empty
data folder explains on every page what to do."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import polars as pl
import pytest
from playwright.sync_api import Browser

from live.runner import SessionConfig, run_session
from tests.app.browser import assert_no_exception, chromium, dashboard_env, dashboard_server, open_page, screenshot
from tests.live.conftest import SYMBOLS, World, trained_world  # noqa: F401  (shared fixture)
from tradeloop.ops import EquityPoint, OpsStore

REFRESH_S = 2
BARS = 20


@pytest.fixture(scope="module")
def watched(
    trained_world: World,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[World, SessionConfig]:
    """A paper session that has processed ``BARS`` bars and can process more (``max_bars``)."""
    root = tmp_path_factory.mktemp("watched") / "data"
    shutil.copytree(trained_world.root, root, ignore=shutil.ignore_patterns("tradeloop.db*"))
    world = World(
        root,
        trained_world.settings.model_copy(update={"data_dir": root}),
        trained_world.candles,
        trained_world.champion,
    )
    start = int(world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-200])
    config = SessionConfig(name="watched", start=start)
    asyncio.run(run_session(world.settings, config, max_bars=BARS))
    return world, config


def one_more_bar(world: World, config: SessionConfig) -> None:
    """The engine processes the session's next bar (in a thread: Playwright's loop runs in this one)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, run_session(world.settings, config, max_bars=1)).result(timeout=120)


def equity_marks(world: World) -> pl.DataFrame:
    store = OpsStore.open(world.settings.effective_database_url)
    try:
        return store.frame(EquityPoint, store.session("watched").id).sort("ts")
    finally:
        store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def test_the_page_shows_the_next_bar_without_a_reload(watched: tuple[World, SessionConfig], browser: Browser) -> None:
    world, config = watched
    env = dashboard_env(world.root, TRADELOOP_DASHBOARD_REFRESH_S=str(REFRESH_S))
    with dashboard_server(env) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        open_page(page, url, heading="Live sessions")
        assert_no_exception(page, "/")
        before = equity_marks(world)
        page.get_by_text(f"{BARS} bars of 4h").wait_for()
        page.get_by_text("auto-refresh every 2 s").first.wait_for()
        page.evaluate("() => { window.__notReloaded = true; }")  # gone if the page reloads
        one_more_bar(world, config)
        after = equity_marks(world)
        assert after.height == before.height + 1
        started = time.monotonic()
        page.get_by_text(f"{BARS + 1} bars of 4h").wait_for(timeout=30_000)
        seen_after_s = time.monotonic() - started
        new_bar = f"last bar {after['ts'].cast(pl.Datetime('ms'))[-1]:%Y-%m-%d %H:%M} UTC"
        page.get_by_text(new_bar).wait_for(timeout=10_000)
        page.get_by_text(f"{after['equity'][-1]:,.2f}").first.wait_for(timeout=10_000)  # the new mark
        assert page.evaluate("() => window.__notReloaded === true"), "the page reloaded instead of refreshing"
        assert seen_after_s < 5 * REFRESH_S
        assert_no_exception(page, "/ after a refresh")
        screenshot(page, "live-sessions-after-a-bar")


@pytest.fixture(scope="module")
def empty_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with dashboard_server(dashboard_env(tmp_path_factory.mktemp("empty") / "data")) as url:
        yield url


@pytest.mark.parametrize(
    ("path", "heading", "says"),
    [
        ("", "Live sessions", "No trading session yet"),
        ("performance", "Performance", "Nothing to show yet"),
        ("champion", "Champion", "No champion yet"),
        ("data_health", "Data health", "The lake is empty"),
    ],
)
def test_an_empty_data_folder_explains_every_page(
    empty_served: str, browser: Browser, path: str, heading: str, says: str
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    open_page(page, f"{empty_served}/{path}", heading=heading)
    page.get_by_text(says).first.wait_for()
    assert_no_exception(page, f"/{path} on an empty data folder")
    screenshot(page, f"empty-{path or 'live-sessions'}")
    page.close()
