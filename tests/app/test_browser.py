"""Once in a real browser: Debian's chromium (driven by Playwright) loads every dashboard page
served by `tradeloop dashboard` against real data, and saves a screenshot of each."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("TRADELOOP_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
PAGES = {"": "Live sessions", "performance": "Performance", "champion": "Champion", "data_health": "Data health"}
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dashboard_server(env: dict[str, str]) -> Iterator[str]:
    """`tradeloop dashboard` on a free port with the environment ``env``; yields its address."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tradeloop", "dashboard", "--port", str(port)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.3)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def served(dashboard_root: Path) -> Iterator[str]:
    with dashboard_server({**os.environ, "TRADELOOP_DATA_DIR": str(dashboard_root)}) as url:
        yield url


def test_every_page_renders_in_chromium(served: str, tmp_path: Path) -> None:
    assert Path(CHROMIUM).exists(), "chromium is missing: tests/services/ensure.sh installs Debian's package"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for path, title in PAGES.items():
            page.goto(f"{served}/{path}")
            page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
            page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=60_000)
            assert page.locator('[data-testid="stException"]').count() == 0, f"exception on /{path}"
            if path in ("", "performance", "data_health"):  # charts drawn, not only tables
                page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=30_000)
            shot = tmp_path / f"{path or 'overview'}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000
        browser.close()
