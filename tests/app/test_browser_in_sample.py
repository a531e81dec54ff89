"""In a real browser (Debian's chromium, driven by Playwright): the overview marks the
in-sample session and the champion page says, in words, that the last retrain was refused."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.app.browser import CHROMIUM, FLAGS, dashboard_server
from tests.app.test_dashboard_in_sample import REFUSED, marked_root  # noqa: F401  (shared fixture)


@pytest.fixture
def served_marked(marked_root: Path) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"TRADELOOP_DATA_DIR": str(marked_root)}
    with dashboard_server(env) as url:
        yield url


def test_in_sample_badge_and_research_words_render_in_chromium(served_marked: str) -> None:
    assert Path(CHROMIUM).exists(), "chromium is missing: tests/services/ensure.sh installs Debian's package"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(served_marked)
        page.get_by_text("Session 'inside' is IN-SAMPLE").first.wait_for(timeout=60_000)
        page.goto(f"{served_marked}/champion")
        page.get_by_text(f"was refused by the gate: {REFUSED}").first.wait_for(timeout=60_000)
        page.get_by_text("it went stale on").first.wait_for(timeout=30_000)
        assert page.locator('[data-testid="stException"]').count() == 0
        browser.close()
