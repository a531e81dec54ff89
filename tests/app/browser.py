"""Driving the dashboard in a real browser: `tradeloop dashboard` on a free port, Debian's
chromium through Playwright, and full-page screenshots kept as test artifacts under
``TRADELOOP_TEST_ARTIFACTS`` (default ``<repo>/test-artifacts/screenshots/``)."""

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

from playwright.sync_api import Browser, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("TRADELOOP_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WIDTH, HEIGHT = 1400, 1000
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
EXCEPTION = '[data-testid="stException"]'


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("TRADELOOP_TEST_ARTIFACTS") or ROOT / "test-artifacts") / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dashboard_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a dashboard reading ``data_dir`` and its own SQLite database."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return env | {"TRADELOOP_DATA_DIR": str(data_dir)} | extra


@contextmanager
def dashboard_server(env: dict[str, str]) -> Iterator[str]:
    """`tradeloop dashboard` on a free port with the environment ``env``; yields its address."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradeloop", "dashboard", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
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


@contextmanager
def chromium() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "chromium is missing: tests/services/ensure.sh installs Debian's package"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(page: Page, url: str, *, heading: str) -> None:
    """Go to ``url`` and wait until its ``heading`` shows and the script has finished."""
    page.goto(url)
    page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
    settle(page)


def settle(page: Page) -> None:
    page.wait_for_selector(IDLE, timeout=60_000)
    page.wait_for_timeout(300)  # let a rerun the last widget triggered start, if any
    page.wait_for_selector(IDLE, timeout=60_000)


def wait_for_cell(page: Page, text: str) -> None:
    """A table cell reading ``text`` (Streamlit draws tables on a canvas; its cells are an
    accessible grid that is attached but not visible)."""
    page.get_by_role("gridcell", name=text, exact=True, include_hidden=True).first.wait_for(
        state="attached", timeout=30_000
    )


def assert_no_exception(page: Page, where: str) -> None:
    errors = page.locator(EXCEPTION)
    assert errors.count() == 0, f"exception on {where}: {errors.first.inner_text()[:2000]}"


def screenshot(page: Page, name: str) -> Path:
    """The whole page (Streamlit scrolls inside its main block, so the viewport grows to fit)."""
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": WIDTH, "height": max(HEIGHT, int(height) + 40)})
    page.wait_for_timeout(500)  # plotly redraws at the new size
    path = artifacts_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    assert path.stat().st_size > 20_000, f"{path} is nearly blank"
    return path
