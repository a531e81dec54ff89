"""With an identity provider configured, the dashboard served by `tradeloop dashboard` shows a
real browser only its sign-in prompt (a screenshot is kept, see ``tests/app/browser.py``)."""

from __future__ import annotations

from pathlib import Path

from tests.app.browser import assert_no_exception, chromium, dashboard_env, dashboard_server, open_page, screenshot


def test_the_sign_in_prompt_is_all_a_browser_sees_before_signing_in(tmp_path: Path) -> None:
    env = dashboard_env(
        tmp_path / "data", TRADELOOP_OIDC_ISSUER="https://id.desk.example", TRADELOOP_OIDC_AUDIENCE="tradeloop-api"
    )
    with dashboard_server(env) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        open_page(page, url, heading="Sign in")
        assert_no_exception(page, "/")
        page.get_by_role("button", name="Sign in").wait_for()
        page.get_by_text("https://id.desk.example").first.wait_for()
        assert page.get_by_role("heading", name="Live sessions").count() == 0
        screenshot(page, "sign-in")
