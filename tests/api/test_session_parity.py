"""A session made through ``POST /sessions`` is the one ``tradeloop live run`` makes for the
same options (the same stored config, risk limits and in-sample decision against the
champion), and ``tradeloop live run`` (its ``run_command``) trades it, resuming it by name.
Over the sample lake with a real champion and PostgreSQL."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from live.runner import SessionConfig, open_session
from tests.api.conftest import Api, start_api
from tests.live.conftest import SYMBOLS, World, trained_world  # noqa: F401  (shared fixture)
from tradeloop.cli.risk_opts import order_rules, risk_config
from tradeloop.identity import Role
from tradeloop.ops import TradingSession
from tradeloop.ops.champion_log import iso_utc
from tradeloop.registry import ModelRegistry

ROOT = Path(__file__).resolve().parents[2]
STORED = ("strategy", "exchange", "timeframe", "symbols", "mode", "status", "init_cash", "cash", "config",
          "risk_config", "in_sample", "last_bar_ts", "halted", "needs_ack")  # fmt: skip


@pytest.fixture
def world_api(trained_world: World, tmp_path: Path, pg_database: str) -> Iterator[Api]:
    """The API over the trained world's lake and registry (a champion trained before the last
    1000 bars) and a PostgreSQL database of its own."""
    data = tmp_path / "data"
    data.mkdir()
    for part in ("lake", "registry"):
        (data / part).symlink_to(trained_world.settings.data_dir / part)
    yield from start_api(tmp_path, pg_database)


def _ts(world: World) -> list[int]:
    return world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"].to_list()


def _row(api: Api, name: str) -> TradingSession:
    return api.ctx.store.session(name)


def test_the_api_writes_the_row_the_cli_writes_for_the_same_options(
    world_api: Api,
    trained_world: World,
) -> None:
    api = world_api
    api.user("ana", Role.TRADER)
    start = _ts(trained_world)[-300]
    body = {
        "name": "api-made", "symbols": list(SYMBOLS), "start": start, "init_cash": 5_000.0, "fraction": 0.25,
        "orders": {"stop_loss": 0.05, "entry_order": "limit", "limit_offset": 0.002},
        "risk": {"max_drawdown": 0.25, "price_band": None, "max_order_notional": 2_000},
    }  # fmt: skip
    made = api.client.post("/sessions", json=body, headers=api.login("ana"))
    assert made.status_code == 201, made.text
    # what `tradeloop live run --name cli-made --symbol ... --start ... --cash 5000 --fraction 0.25 --orders ...
    # --risk ...` builds (tradeloop.cli.live_cmds.run) and live.runner.open_session writes
    cli = SessionConfig(
        name="cli-made", symbols=SYMBOLS, start=start, init_cash=5_000.0, fraction=0.25,
        orders=order_rules(["stop_loss=0.05", "entry_order=limit", "limit_offset=0.002"]),
        risk=risk_config(["max_drawdown=0.25", "price_band=null", "max_order_notional=2000"]),
    )  # fmt: skip
    open_session(api.ctx.store, ModelRegistry(api.ctx.settings.registry_dir), cli, first_bar_ms=start)
    ours, theirs = _row(api, "api-made"), _row(api, "cli-made")
    assert {c: getattr(ours, c) for c in STORED} == {c: getattr(theirs, c) for c in STORED}
    assert ours.config["fee_rate"] > 0 and ours.config["stop_loss"] == 0.05  # the champion's costs, the rules
    assert ours.risk_config["max_order_notional"] == 2_000 and ours.in_sample is False
    started = [a for a in api.ctx.store.audit_log(events=("session_started",))]
    assert [a.detail for a in started if a.session_id == ours.id] == [
        a.detail for a in started if a.session_id == theirs.id
    ]
    assert ours.owner_id is not None and theirs.owner_id is None  # the API's has its owner


def test_in_sample_starts_are_refused_as_the_cli_refuses_them_unless_allowed(
    world_api: Api,
    trained_world: World,
) -> None:
    api = world_api
    api.user("ana", Role.TRADER)
    ana = api.login("ana")
    _, model = ModelRegistry(api.ctx.settings.registry_dir).load("sma_cross")
    early = _ts(trained_world)[-1100]  # before the champion's training end
    for options in ({"start": early}, {}):  # no start: the lake's first candle
        refused = api.client.post("/sessions", json={"name": "early", **options}, headers=ana)
        assert refused.status_code == 422, refused.text
        detail = refused.json()["detail"]
        assert f"champion's training end {iso_utc(model.trained_until)}" in detail and "allow-in-sample" in detail
    first = int(trained_world.candles["ts"].min())
    assert f"would start at {iso_utc(first)}" in detail
    allowed = api.client.post("/sessions", json={"name": "early", "start": early, "allow_in_sample": True}, headers=ana)
    assert allowed.status_code == 201 and allowed.json()["in_sample"] is True
    assert allowed.json()["run_command"].endswith("--allow-in-sample")
    marked = api.ctx.store.audit_log(allowed.json()["id"], events=("session_in_sample",))
    assert [(a.actor, a.detail["first_bar_ms"]) for a in marked] == [("ana", early)]


def test_tradeloop_live_run_trades_the_session_the_api_made(
    world_api: Api,
    trained_world: World,
) -> None:
    api = world_api
    api.user("ana", Role.TRADER)
    ana = api.login("ana")
    start = _ts(trained_world)[-300]
    made = api.client.post("/sessions", json={"name": "api-run", "symbols": list(SYMBOLS), "start": start}, headers=ana)
    assert made.status_code == 201, made.text
    sid, command = made.json()["id"], shlex.split(made.json()["run_command"])
    assert command[:3] == ["tradeloop", "live", "run"]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(api.ctx.settings.data_dir),
        "TRADELOOP_DATA_DIR": str(api.ctx.settings.data_dir), "DATABASE_URL": api.ctx.settings.effective_database_url,
    }  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "tradeloop", *command[1:], "--max-bars", "5"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert [s.id for s in api.ctx.store.sessions()] == [sid]  # resumed by name: no second session
    shown = api.client.get(f"/sessions/{sid}", headers=ana).json()
    assert shown["last_bar_ts"] == _ts(trained_world)[-296]  # five bars from the start
    marks = api.client.get(f"/sessions/{sid}/equity", headers=ana).json()["items"]
    assert [m["ts"] for m in marks] == _ts(trained_world)[-300:-295]
    assert shown["equity"] == marks[-1]["equity"]
