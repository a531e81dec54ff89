"""Single sign-on end to end in a real browser: `tradeloop dashboard` configured with Streamlit's
``[auth]`` against a real OpenID Connect provider on loopback (panva's oidc-provider,
``tests/oidc``), chromium clicks "Sign in", signs in as ana on the provider's own login and
consent pages, comes back to the dashboard and sees ana's sessions and not bob's, over a real
SQLite operational database holding both (owned as the API records it: the local user made
for the provider's ``issuer|sub``); signs out (at the provider too) and in as bob, who sees
only his. A screenshot is kept (``tests/app/browser.py``)."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page

from tests.app.browser import (
    assert_no_exception,
    chromium,
    dashboard_env,
    dashboard_server,
    open_page,
    screenshot,
    settle,
    wait_for_cell,
)
from tests.oidc.server import SECRET, OidcServer, WebClient, free_port
from tradeloop.backtest import BacktestConfig
from tradeloop.identity import IdentityStore, Role
from tradeloop.ops import OpsStore, TradingSession

CLIENT_ID = "tradeloop-dashboard"
PEOPLE = {
    "ana": {"preferred_username": "ana", "email": "ana@desk.example", "tradeloop_role": "trader"},
    "bob": {"preferred_username": "bob", "email": "bob@desk.example", "tradeloop_role": "trader"},
}
SESSIONS = {"ana-momentum": "ana", "bob-breakout": "bob", "ana-meanrev": "ana", "operator-cli": None}


def seed(database: Path, issuer: str) -> None:
    """ana's and bob's sessions (and one from before there were users), owned as the API
    records it: by the local user it made for the provider subject ``issuer|sub``."""
    store = OpsStore.open(f"sqlite:///{database}")
    try:
        identity = IdentityStore(store)
        owners = {
            sub: identity.create_user(
                username=sub, password=None, role=Role.TRADER, external_subject=f"{issuer}|{sub}"
            ).id
            for sub in PEOPLE
        }
        config = BacktestConfig().model_dump(mode="json")
        for name, sub in SESSIONS.items():
            made = store.create_session(
                name=name, strategy="sma_cross", exchange="coinbase", timeframe="4h", symbols=["BTC-USD"],
                mode="paper", init_cash=10_000.0, config=config,
            )  # fmt: skip
            with store.transaction() as db:
                db.get(TradingSession, made.id).owner_id = owners[sub] if sub else None
    finally:
        store.close()


def secrets_toml(path: Path, *, issuer: str) -> Path:
    """Streamlit's ``[auth]`` for the provider (``{port}``: Streamlit fills in its own).
    oidc-provider refuses Streamlit's default ``prompt=select_account`` (not an OIDC prompt it
    implements), so the dashboard asks for ``login``."""
    path.write_text(
        "[auth]\n"
        'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        'cookie_secret = "a-cookie-secret-for-tests-only-0123456789"\n'
        f'client_id = "{CLIENT_ID}"\n'
        f'client_secret = "{SECRET}"\n'
        f'server_metadata_url = "{issuer}/.well-known/openid-configuration"\n'
        'client_kwargs = { prompt = "login" }\n'
    )
    return path


def sign_in(page: Page, url: str, *, issuer: str, login: str) -> None:
    """From the dashboard's prompt through the provider's pages (its login form, which any
    password opens, then its consent page) back to the dashboard, signed in."""
    open_page(page, url, heading="Sign in")
    assert page.locator('[data-testid="stAlert"]').count() == 0, "the prompt says sign-in is not configured"
    page.get_by_role("button", name="Sign in").click()
    page.locator('input[name="login"]').wait_for(timeout=30_000)
    assert page.url.startswith(f"{issuer}/"), page.url  # on the provider's own page
    page.fill('input[name="login"]', login)
    page.fill('input[name="password"]', "any password opens the test provider")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click(timeout=30_000)
    page.wait_for_url(f"{url}/", timeout=30_000)
    page.get_by_role("heading", name="Live sessions").first.wait_for(timeout=60_000)
    settle(page)
    assert_no_exception(page, f"/ signed in as {login}")
    page.get_by_text(f"Signed in as {login}").first.wait_for()


def session_list(page: Page) -> tuple[set[str], list[str]]:
    """The sessions the page shows: the names in its table and the session selector's options."""
    table = {
        name for name in SESSIONS if page.get_by_role("gridcell", name=name, exact=True, include_hidden=True).count()
    }
    page.get_by_test_id("stMain").get_by_test_id("stSelectbox").first.click()
    options = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    return table, options


def test_a_reader_signs_in_through_the_provider_and_sees_only_their_own_sessions(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    seed(data / "tradeloop.db", issuer)
    env = dashboard_env(
        data,
        TRADELOOP_OIDC_ISSUER=issuer,
        TRADELOOP_OIDC_AUDIENCE="tradeloop-api",
        STREAMLIT_SECRETS_FILES=str(secrets_toml(tmp_path / "secrets.toml", issuer=issuer)),
    )
    with dashboard_server(env) as url, chromium() as browser:
        provider = OidcServer(
            tmp_path, [], users=PEOPLE, web_clients=[WebClient(CLIENT_ID, [f"{url}/oauth2callback"])], port=port
        ).start()
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            sign_in(page, url, issuer=issuer, login="ana")
            wait_for_cell(page, "ana-momentum")
            screenshot(page, "signed-in")
            assert session_list(page) == ({"ana-momentum", "ana-meanrev"}, ["ana-momentum", "ana-meanrev"])

            # signing out goes through the provider's end-session page and back to the prompt
            page.get_by_role("button", name="Sign out").click()
            page.get_by_role("button", name="Yes, sign me out").click(timeout=30_000)
            page.get_by_role("heading", name="Sign in").first.wait_for(timeout=60_000)
            sign_in(page, url, issuer=issuer, login="bob")
            wait_for_cell(page, "bob-breakout")
            assert session_list(page) == ({"bob-breakout"}, ["bob-breakout"])
        finally:
            provider.stop()
