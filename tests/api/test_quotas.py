"""Bounds that keep one user from taking more than their share: at most 20 active API keys
(each key has its own rate-limit bucket), a bounded number of unfinished jobs, a 32-bit
research seed, and starting cash of at most 1e12 (sessions, backtests and the CLI)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.api.conftest import Api
from tests.api.test_jobs import BACKTEST, Stack, start_stack
from tests.conftest import redis_prefix  # noqa: F401 - a fixture
from tradeloop.cli.main import app as cli
from tradeloop.errors import ConfigError
from tradeloop.identity import IdentityStore, Role, Scope
from tradeloop.jobs import JobsConfig
from tradeloop.ops import OpsStore

NOW = datetime(2026, 1, 5, tzinfo=UTC)


def test_a_user_holds_at_most_20_active_keys_and_rotation_needs_no_free_place(api: Api) -> None:
    api.user("ana", Role.VIEWER)  # PostgreSQL: the requests run under row-level security
    ana = api.login("ana")
    made = [api.client.post("/keys", json={"name": f"k{i}", "scopes": ["read"]}, headers=ana) for i in range(20)]
    assert [r.status_code for r in made] == [201] * 20
    refused = api.client.post("/keys", json={"name": "k20", "scopes": ["read"]}, headers=ana)
    assert refused.status_code == 422
    assert "20 active API keys" in refused.json()["detail"] and "revoke one" in refused.json()["detail"]
    first = made[0].json()["id"]
    rotated = api.client.post(f"/keys/{first}/rotate", headers=ana)  # the successor takes the old key's place
    assert rotated.status_code == 200, rotated.text
    again = api.client.post(f"/keys/{first}/rotate", headers=ana)  # that place is handed on already
    assert again.status_code == 422 and "revoke one" in again.json()["detail"]
    assert api.client.delete(f"/keys/{made[1].json()['id']}", headers=ana).status_code == 204
    assert api.client.post("/keys", json={"name": "k21", "scopes": ["read"]}, headers=ana).status_code == 201
    assert api.client.post("/keys", json={"name": "k22", "scopes": ["read"]}, headers=ana).status_code == 422
    bob = api.user("bob", Role.VIEWER)  # the cap is per user
    assert api.ctx.identity.create_api_key(user_id=bob, name="b", scopes=[Scope.READ], now=api.ctx.now())


def test_expired_and_revoked_keys_do_not_count(tmp_path: Path) -> None:
    store = OpsStore.open(f"sqlite:///{tmp_path / 'ops.db'}")
    identity = IdentityStore(store)
    user = identity.create_user(username="ana", password=None, role=Role.VIEWER).id
    short = [
        identity.create_api_key(user_id=user, name="s", scopes=[Scope.READ], now=NOW, ttl=timedelta(hours=1))[1]
        for _ in range(19)
    ]
    identity.create_api_key(user_id=user, name="last", scopes=[Scope.READ], now=NOW)
    with pytest.raises(ConfigError, match="has 20 active API keys"):
        identity.create_api_key(user_id=user, name="x", scopes=[Scope.READ], now=NOW)
    identity.revoke_api_key(short[0].id, now=NOW)
    identity.create_api_key(user_id=user, name="x", scopes=[Scope.READ], now=NOW)
    later = NOW + timedelta(hours=2)  # the 18 short ones left have expired
    for i in range(18):
        identity.create_api_key(user_id=user, name=f"y{i}", scopes=[Scope.READ], now=later)
    with pytest.raises(ConfigError, match="has 20 active API keys"):
        identity.create_api_key(user_id=user, name="z", scopes=[Scope.READ], now=later)
    store.close()


@pytest.fixture
def stack(tmp_path: Path, pg_database: str, redis_prefix: str) -> Iterator[Stack]:
    """The API over PostgreSQL queueing in Redis, no worker: jobs stay queued; 3 per user."""
    with start_stack(tmp_path, pg_database, prefix=redis_prefix, config=JobsConfig(max_unfinished_per_owner=3)) as s:
        yield s


def test_a_user_may_have_only_so_many_jobs_queued_or_running(stack: Stack) -> None:
    api = stack.api
    api.user("ana", Role.TRADER)
    api.user("bob", Role.TRADER)
    ana, bob = api.login("ana"), api.login("bob")
    assert [api.client.post("/backtests", json=BACKTEST, headers=ana).status_code for _ in range(3)] == [202] * 3
    refused = api.client.post("/research-runs", json={"trials": 2}, headers=ana)
    assert refused.status_code == 409, refused.text
    assert "3 jobs queued or running" in refused.json()["detail"] and "wait for one" in refused.json()["detail"]
    listed = api.client.get("/jobs", headers=ana).json()
    assert len(listed["items"] if isinstance(listed, dict) else listed) == 3  # nothing was written
    assert api.client.post("/backtests", json=BACKTEST, headers=bob).status_code == 202  # bob has his own
    first = stack.queue.jobs.unfinished()[0].id
    stack.queue.jobs.fail(first, "stopped by the test")  # one of ana's finishes: a place is free
    assert api.client.post("/backtests", json=BACKTEST, headers=ana).status_code == 202
    assert api.client.post("/backtests", json=BACKTEST, headers=ana).status_code == 409


def test_a_seed_past_32_bits_is_refused_naming_the_field(stack: Stack) -> None:
    api = stack.api
    api.user("ana", Role.TRADER)
    ana = api.login("ana")
    seed = api.client.post("/research-runs", json={"trials": 2, "seed": 10**29}, headers=ana)
    assert seed.status_code == 422 and "seed" in seed.json()["detail"]
    assert api.client.post("/research-runs", json={"trials": 2, "seed": 2**32 - 1}, headers=ana).status_code == 202


def test_starting_cash_past_1e12_is_refused_naming_the_field(stack: Stack) -> None:
    api = stack.api
    api.user("ana", Role.TRADER)
    ana = api.login("ana")
    rich = BACKTEST | {"config": BACKTEST["config"] | {"init_cash": 1e308}}
    backtest = api.client.post("/backtests", json=rich, headers=ana)
    assert backtest.status_code == 422 and "body.config=" in backtest.json()["detail"]
    assert "init_cash=1e+308 is past" in str(backtest.json()), backtest.json()
    fine = BACKTEST | {"config": BACKTEST["config"] | {"init_cash": 1e12}}
    assert api.client.post("/backtests", json=fine, headers=ana).status_code == 202
    session = api.client.post("/sessions", json={"init_cash": 1e308}, headers=ana)
    assert session.status_code == 422 and "body.init_cash=" in session.json()["detail"]
    modest = api.client.post("/sessions", json={"init_cash": 1e6}, headers=ana)
    assert "body.init_cash=" not in modest.json()["detail"]  # refused for its other fields only


def test_the_cli_refuses_starting_cash_past_1e12() -> None:
    result = CliRunner().invoke(cli, ["live", "run", "--cash", "1e308"])
    assert result.exit_code == 2 and "--cash" in result.output
