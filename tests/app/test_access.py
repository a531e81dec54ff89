"""The dashboard with an identity provider: a reader sees only their own sessions (the owner
the API recorded for their subject), an admin every one, nobody anything before signing in;
without a provider the operator sees everything. Over a real SQLite operational database;
the dashboard itself through Streamlit's AppTest with ``st.user`` set as a sign-in sets it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.conftest import dashboard_reads
from tradeloop.backtest import BacktestConfig
from tradeloop.errors import AuthError
from tradeloop.identity import IdentityStore, OidcConfig, Role
from tradeloop.ops import OpsStore, TradingSession

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "app"))  # the dashboard's modules, as it runs them

import access

DASHBOARD = str(Path(__file__).resolve().parents[2] / "app" / "dashboard.py")
ISSUER = "https://id.desk.example"
CONFIG = OidcConfig(issuer=ISSUER, audience="tradeloop-api")


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[tuple[OpsStore, dict[str, int]]]:
    """Sessions of ana and bob (users the API made for their provider subjects) and one from
    before there were users."""
    store = OpsStore.open(f"sqlite:///{tmp_path / 'tradeloop.db'}")
    identity = IdentityStore(store)
    users = {
        name: identity.create_user(
            username=name, password=None, role=Role.TRADER, external_subject=f"{ISSUER}|{name}-sub"
        ).id
        for name in ("ana", "bob")
    }
    config = BacktestConfig().model_dump(mode="json")
    for name, owner in (("ana-1", users["ana"]), ("bob-1", users["bob"]), ("ana-2", users["ana"]), ("cli", None)):
        made = store.create_session(
            name=name, strategy="sma_cross", exchange="coinbase", timeframe="4h", symbols=["BTC-USD"],
            mode="paper", init_cash=10_000.0, config=config,
        )  # fmt: skip
        with store.transaction() as db:  # the owner, as the API records it (sessions.owner_id)
            db.get(TradingSession, made.id).owner_id = owner
    yield store, users
    store.close()


def claims(sub: str, **extra: object) -> dict:
    return {"iss": ISSUER, "sub": sub, "aud": "dashboard", **extra}


def names(store: OpsStore, reader: access.Reader) -> list[str]:
    return [s.name for s in access.visible_sessions(store.sessions(), reader)]


def test_a_reader_sees_only_their_own_sessions_and_an_admin_every_one(desk) -> None:
    store, users = desk
    ana = access.reader_from_claims(claims("ana-sub"), config=CONFIG, store=store)
    assert (ana.user_id, ana.admin, ana.name) == (users["ana"], False, "ana")
    assert names(store, ana) == ["ana-1", "ana-2"]
    bob = access.reader_from_claims(claims("bob-sub", tradeloop_role="trader"), config=CONFIG, store=store)
    assert names(store, bob) == ["bob-1"]
    admin = access.reader_from_claims(claims("bob-sub", tradeloop_role=["viewer", "admin"]), config=CONFIG, store=store)
    assert names(store, admin) == ["ana-1", "bob-1", "ana-2", "cli"]
    stranger = access.reader_from_claims(claims("new-sub", email="new@desk.example"), config=CONFIG, store=store)
    assert stranger.user_id is None and names(store, stranger) == []  # owns nothing until the API has seen them
    assert names(store, access.NOBODY) == [] and len(names(store, access.OPERATOR)) == 4


def test_a_token_of_another_issuer_or_a_disabled_user_is_refused(desk) -> None:
    store, _ = desk
    with pytest.raises(AuthError, match="this deployment trusts"):
        access.reader_from_claims({**claims("ana-sub"), "iss": "https://elsewhere.example"}, config=CONFIG, store=store)
    IdentityStore(store).set_disabled("ana", True, now=datetime.now(UTC))
    with pytest.raises(AuthError, match="disabled"):
        access.reader_from_claims(claims("ana-sub"), config=CONFIG, store=store)


def test_the_dashboard_asks_for_sign_in_then_lists_only_the_readers_sessions(
    desk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRADELOOP_OIDC_ISSUER", ISSUER)
    monkeypatch.setenv("TRADELOOP_OIDC_AUDIENCE", "tradeloop-api")
    with dashboard_reads(tmp_path, monkeypatch):
        at = AppTest.from_file(DASHBOARD, default_timeout=60)
        at.user = {"is_logged_in": False}
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert [t.value for t in at.title] == ["Sign in"] and not at.dataframe  # nothing else shows
        at.user = {"is_logged_in": True, **claims("ana-sub")}
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        [sessions] = [d.value for d in at.dataframe if "session" in d.value.columns]
        assert sessions["session"].tolist() == ["ana-1", "ana-2"]
        assert at.selectbox(key="session").options == ["ana-1", "ana-2"]


def test_without_a_provider_the_dashboard_refuses_to_listen_beyond_loopback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADELOOP_")} | {
        "TRADELOOP_DATA_DIR": str(tmp_path)
    }
    done = subprocess.run(
        [sys.executable, "-m", "tradeloop", "dashboard", "--host", "0.0.0.0"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (
        done.returncode == 2 and "listens on 127.0.0.1 only" in done.stderr and "TRADELOOP_OIDC_ISSUER" in done.stderr
    )
