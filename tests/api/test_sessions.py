"""Trading sessions through the real HTTP stack (uvicorn, httpx) over PostgreSQL: a trader
makes one (the row ``tradeloop live run`` would write), lists, pauses, resumes, stops and
acknowledges it, each audited with the caller; its orders, fills, positions, equity and audit
log come back paged and filtered by time; another user's session is not there at all."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api
from tradeloop.identity import Role, Scope
from tradeloop.ops import EquityPoint, Fill, OpsStore, Order, Position

START_MS = 1_893_456_000_000  # 2030-01-01T00:00:00Z: after any champion's training end
NEW = {"name": "btc", "symbols": ["BTC-USD"], "start": "2030-01-01T00:00:00Z"}


def _trader(api: Api, name: str = "ana") -> tuple[int, dict[str, str]]:
    user_id = api.user(name, Role.TRADER)
    return user_id, api.login(name)


def _make(api: Api, headers: dict[str, str], **options) -> dict:
    made = api.client.post("/sessions", json=NEW | options, headers=headers)
    assert made.status_code == 201, made.text
    return made.json()


def _events(api: Api, session_id: int) -> list[tuple[str, str | None]]:
    return [(a.event, a.actor) for a in api.ctx.store.audit_log(session_id) if a.event != "api_request"]


def test_a_trader_makes_a_session_and_pauses_resumes_and_stops_it_each_audited_with_the_caller(api: Api) -> None:
    ana_id, ana = _trader(api)
    made = _make(api, ana, orders={"stop_loss": 0.05}, risk={"max_drawdown": 0.2, "price_band": None})
    sid = made["id"]
    assert made["owner_id"] == ana_id and made["mode"] == "paper" and made["symbols"] == ["BTC-USD"]
    assert made["stored_status"] == "running" and made["status"] == "stale"  # no engine runs it yet
    assert made["cash"] == made["equity"] == made["init_cash"] == 10_000.0
    assert made["orders"]["stop_loss"] == 0.05 and made["orders"]["cash_sharing"] is True
    assert made["risk"]["max_drawdown"] == 0.2 and made["risk"]["price_band"] is None
    assert made["risk"]["daily_loss_limit"] == 0.15  # what was not given keeps RiskConfig's default
    assert "--name btc --strategy sma_cross --exchange coinbase --symbol BTC-USD --timeframe 4h" in made["run_command"]
    assert f"--start {START_MS}" in made["run_command"]
    assert [s["id"] for s in api.client.get("/sessions", headers=ana).json()["items"]] == [sid]

    api.ctx.store.beat(sid)  # an engine's heartbeat: running for real
    assert api.client.get(f"/sessions/{sid}", headers=ana).json()["status"] == "running"
    for action, stored in (("pause", "paused"), ("resume", "running"), ("pause", "paused"), ("start", "running")):
        answer = api.client.post(f"/sessions/{sid}/{action}", headers=ana)
        assert answer.status_code == 200, answer.text
        assert answer.json()["stored_status"] == stored
    assert api.client.post(f"/sessions/{sid}/stop", headers=ana).json()["stored_status"] == "stopped"
    for action in ("resume", "start", "pause"):
        refused = api.client.post(f"/sessions/{sid}/{action}", headers=ana)
        assert refused.status_code == 409 and refused.headers["content-type"] == "application/problem+json"
        assert "is stopped; it cannot become" in refused.json()["detail"]
        assert "from stopped it can become nothing" in refused.json()["detail"]
    assert _events(api, sid) == [
        ("session_started", "ana"), ("session_paused", "ana"), ("session_running", "ana"),
        ("session_paused", "ana"), ("session_running", "ana"), ("session_stopped", "ana"),
    ]  # fmt: skip
    requests = [a for a in api.ctx.store.audit_log() if a.event == "api_request"]  # the middleware's, refusals too
    assert [a.detail["status"] for a in requests][-3:] == [409, 409, 409] and requests[-1].actor == "ana"


def test_a_finished_replay_cannot_pause_but_starts_again(api: Api) -> None:
    _, ana = _trader(api)
    sid = _make(api, ana)["id"]
    assert api.ctx.store.finish(sid)  # the engine reached the end of its data
    refused = api.client.post(f"/sessions/{sid}/pause", headers=ana)
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "session 'btc' is finished; it cannot become paused; from finished it can become running, stopped"
    )
    started = api.client.post(f"/sessions/{sid}/start", headers=ana)
    assert started.status_code == 200 and started.json()["stored_status"] == "running"
    assert _events(api, sid)[-1] == ("session_running", "ana")


def test_ack_clears_the_reduce_only_state_and_then_a_symbol_halt_each_audited(api: Api) -> None:
    _, ana = _trader(api)
    sid = _make(api, ana, symbols=["BTC-USD", "ETH-USD"])["id"]
    nothing = api.client.post(f"/sessions/{sid}/ack", headers=ana)
    assert nothing.status_code == 409 and "not waiting for an acknowledgement" in nothing.json()["detail"]
    with api.ctx.store.transaction() as db:
        OpsStore.require_ack(db, sid, "balance drift of 12 USD", event="balance_drift", detail={})
        OpsStore.halt_symbol(db, sid, "ETH-USD", "an order's outcome is unknown")
    shown = api.client.get(f"/sessions/{sid}", headers=ana).json()
    assert shown["needs_ack"] == "balance drift of 12 USD"
    assert shown["halted"] == {"ETH-USD": "an order's outcome is unknown"}
    acked = api.client.post(f"/sessions/{sid}/ack", headers=ana)
    assert acked.status_code == 200 and acked.json()["needs_ack"] is None and acked.json()["halted"]
    lifted = api.client.post(f"/sessions/{sid}/ack", json={"symbol": "ETH-USD"}, headers=ana)
    assert lifted.status_code == 200 and lifted.json()["halted"] == {}
    again = api.client.post(f"/sessions/{sid}/ack", json={"symbol": "ETH-USD"}, headers=ana)
    assert again.status_code == 409 and "is not halted" in again.json()["detail"]
    assert [e for e in _events(api, sid) if e[0] in ("session_acknowledged", "symbol_resumed")] == [
        ("session_acknowledged", "ana"),
        ("symbol_resumed", "ana"),
    ]


def _records(store: OpsStore, session_id: int) -> None:
    """Five orders decided at 1000..5000 ms (BTC, ETH alternating; the first three filled), a
    fill of each filled order at decided_ts + 10, four equity marks and one BTC position."""
    with store.transaction() as db:
        for i in range(5):
            symbol = "BTC-USD" if i % 2 == 0 else "ETH-USD"
            order = Order(
                session_id=session_id, client_order_id=f"o{i}", venue="paper", symbol=symbol, side="buy",
                intent="enter_long", quote_amount=100.0, decided_ts=(i + 1) * 1000,
                status="filled" if i < 3 else "acknowledged",
            )  # fmt: skip
            db.add(order)
            db.flush()
            if i < 3:
                db.add(
                    Fill(
                        order_id=order.id, session_id=session_id, venue="paper", symbol=symbol, trade_id=f"t{i}",
                        side="buy", quantity=1.0, price=100.0, fee=0.1, ts=(i + 1) * 1000 + 10,
                    )
                )  # fmt: skip
        for ts, equity in ((1000, 10_000.0), (2000, 10_050.0), (3000, 9_990.0), (4000, 10_020.0)):
            db.add(EquityPoint(session_id=session_id, ts=ts, equity=equity, cash=9_700.0))
        db.add(
            Position(
                session_id=session_id, venue="coinbase", symbol="BTC-USD", quantity=0.5, entry_price=100.0,
                entry_fee=0.05, entry_ts=1000, last_price=110.0, realized_pnl=2.5,
            )
        )  # fmt: skip


def _all_pages(api: Api, path: str, headers: dict, cursor: str = "after_id", **params) -> list[list[dict]]:
    pages, after = [], None
    while True:
        query = params | ({cursor: after} if after is not None else {})
        answer = api.client.get(path, params=query, headers=headers)
        assert answer.status_code == 200, answer.text
        pages.append(answer.json()["items"])
        after = answer.json()["next_after"]
        if after is None:
            return pages


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_records_come_back_paged_and_filtered_by_time_status_and_symbol(
    request: pytest.FixtureRequest, database: str
) -> None:
    api: Api = request.getfixturevalue("api" if database == "postgresql" else "sqlite_api")
    _, ana = _trader(api)
    sid = _make(api, ana, symbols=["BTC-USD", "ETH-USD"])["id"]
    _records(api.ctx.store, sid)
    stored = [o.id for o in api.ctx.store.orders(sid)]
    base = f"/sessions/{sid}"

    pages = _all_pages(api, f"{base}/orders", ana, limit=2)
    assert [len(p) for p in pages] == [2, 2, 1] and [o["id"] for p in pages for o in p] == stored
    window = api.client.get(f"{base}/orders", params={"since": 2000, "until": 4000}, headers=ana).json()["items"]
    assert [o["decided_ts"] for o in window] == [2000, 3000, 4000]
    iso = api.client.get(f"{base}/orders", params={"since": "1970-01-01T00:00:04Z"}, headers=ana).json()["items"]
    assert [o["decided_ts"] for o in iso] == [4000, 5000]
    filled_eth = api.client.get(f"{base}/orders", params={"status": "filled", "symbol": "ETH-USD"}, headers=ana).json()[
        "items"
    ]
    assert [(o["client_order_id"], o["status"]) for o in filled_eth] == [("o1", "filled")]
    either = api.client.get(f"{base}/orders", params=[("status", "filled"), ("status", "acknowledged")], headers=ana)
    assert len(either.json()["items"]) == 5
    bad = api.client.get(f"{base}/orders", params={"status": "bogus"}, headers=ana)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "query.status.0"
    bad_time = api.client.get(f"{base}/orders", params={"since": "last tuesday"}, headers=ana)
    assert bad_time.status_code == 422 and "since" in bad_time.json()["detail"]
    assert "epoch milliseconds" in bad_time.json()["detail"]

    fills = _all_pages(api, f"{base}/fills", ana, limit=2)
    assert [[f["trade_id"] for f in p] for p in fills] == [["t0", "t1"], ["t2"]]
    late = api.client.get(f"{base}/fills", params={"since": 2010}, headers=ana).json()["items"]
    assert [f["ts"] for f in late] == [2010, 3010]

    marks = _all_pages(api, f"{base}/equity", ana, cursor="after_ts", limit=3)
    assert [[m["ts"] for m in p] for p in marks] == [[1000, 2000, 3000], [4000]]
    early = api.client.get(f"{base}/equity", params={"until": 2000}, headers=ana).json()["items"]
    assert [m["equity"] for m in early] == [10_000.0, 10_050.0]
    assert api.client.get(base, headers=ana).json()["equity"] == 10_020.0  # the newest mark

    [held] = api.client.get(f"{base}/positions", headers=ana).json()
    assert held["instrument"] == "coinbase:BTC-USD" and held["quantity"] == 0.5 and held["mark_price"] == 110.0
    assert held["unrealized_pnl"] == pytest.approx(0.5 * (110.0 - 100.0) - 0.05)  # less the entry fee paid

    audit = api.client.get(f"{base}/audit", params={"event": "session_started"}, headers=ana).json()["items"]
    assert [(a["event"], a["actor"]) for a in audit] == [("session_started", "ana")]
    assert audit[0]["detail"]["symbols"] == ["BTC-USD", "ETH-USD"]
    at = audit[0]["at"]
    assert api.client.get(f"{base}/audit", params={"since": at}, headers=ana).json()["items"]
    assert api.client.get(f"{base}/audit", params={"until": "2000-01-01"}, headers=ana).json()["items"] == []


def test_another_users_session_does_not_exist_for_them_whatever_they_send(api: Api) -> None:
    ana_id, ana = _trader(api, "ana")
    _, bob = _trader(api, "bob")
    api.user("root", Role.ADMIN)
    admin = api.login("root")
    theirs = _make(api, ana)["id"]
    _records(api.ctx.store, theirs)
    mine = _make(api, bob, name="bob-btc")["id"]
    legacy = api.ctx.store.create_session(
        name="before-users", strategy="sma_cross", exchange="coinbase", timeframe="4h", symbols=["BTC-USD"],
        mode="paper", init_cash=1000.0, config={},
    ).id  # fmt: skip

    for method, path in [
        ("GET", ""), ("GET", "/orders"), ("GET", "/fills"), ("GET", "/positions"), ("GET", "/equity"),
        ("GET", "/audit"), ("POST", "/pause"), ("POST", "/stop"), ("POST", "/ack"), ("POST", "/resume"),
    ]:  # fmt: skip
        for sid, who in ((theirs, bob), (legacy, ana)):
            answer = api.client.request(method, f"/sessions/{sid}{path}", headers=who)
            assert answer.status_code == 404, (method, path, answer.text)
            assert (
                answer.json()["detail"] == f"session {sid} does not exist; GET /sessions lists the sessions you can see"
            )
    assert api.ctx.store.session("btc").status == "running"  # bob's stop changed nothing
    forged = {"owner_id": ana_id, "owner": "ana", "user_id": ana_id, "session_id": theirs}
    listed = api.client.get("/sessions", params=forged, headers=bob).json()["items"]
    assert [s["id"] for s in listed] == [mine]
    assert [s["id"] for s in api.client.get("/sessions", headers=ana).json()["items"]] == [theirs]
    everyone = api.client.get("/sessions", headers=admin).json()["items"]
    assert [s["id"] for s in everyone] == [theirs, mine, legacy] and everyone[2]["owner_id"] is None
    assert api.client.post(f"/sessions/{legacy}/pause", headers=admin).json()["stored_status"] == "paused"
    assert len(api.client.get(f"/sessions/{theirs}/orders", headers=admin).json()["items"]) == 5


def test_viewers_and_read_keys_read_but_do_not_act(api: Api) -> None:
    _, ana = _trader(api)
    sid = _make(api, ana)["id"]
    made = api.client.post("/keys", json={"name": "reader", "scopes": [Scope.READ.value]}, headers=ana).json()
    key = {"X-API-Key": made["key"]}
    assert api.client.get(f"/sessions/{sid}/orders", headers=key).status_code == 200
    for action in ("pause", "stop"):
        refused = api.client.post(f"/sessions/{sid}/{action}", headers=key)
        assert refused.status_code == 403 and "trade" in refused.json()["detail"]
    api.user("vera", Role.VIEWER)
    refused = api.client.post("/sessions", json=NEW | {"name": "viewer's"}, headers=api.login("vera"))
    assert refused.status_code == 403
    assert api.ctx.store.session("btc").status == "running"


@pytest.mark.parametrize(
    ("options", "field", "value", "fix"),
    [
        ({"risk": {"bypass": True}}, "body.risk.bypass", True, "tests only"),
        ({"risk": {"max_drawdown": 1.5}}, "body.risk.max_drawdown", 1.5, "less than 1"),
        ({"risk": {"max_drawdwn": 0.2}}, "body.risk.max_drawdwn", 0.2, "did you mean 'max_drawdown'"),
        ({"risk": {"daily_loss_limit": 0.4}}, "body.risk", None, "set daily_loss_limit below 0.3"),
        ({"risk": {"max_order_notional": "lots"}}, "body.risk.max_order_notional", "lots", "valid number"),
        ({"orders": {"init_cash": 5}}, "body.orders.init_cash", 5, "set by the init_cash field, not orders"),
        ({"orders": {"stop_loss": 2}}, "body.orders.stop_loss", 2, "less than 1"),
        ({"orders": {"entry_order": "iceberg"}}, "body.orders.entry_order", "iceberg", "'limit'"),
        ({"orders": {"sizing": "vol_target"}}, "body.orders", None, "needs vol_target"),
        ({"mode": "live"}, "body.credential", None, "one of your stored exchange credentials"),
        ({"strategy": "sma_crss"}, "body.strategy", "sma_crss", "did you mean 'sma_cross'"),
        ({"timeframe": "4 hours"}, "body.timeframe", "4 hours", "1h, 4h"),
        ({"symbols": ["BTCUSD"]}, "body.symbols.0", "BTCUSD", "BASE-QUOTE"),
        ({"symbols": ["BTC-USD", "BTC/USD"]}, "body.symbols.1", "BTC/USD", "again; give each once"),  # once a 500
        ({"window_bars": 10}, "body.window_bars", 10, "pass window_bars"),
        ({"init_cash": -5}, "body.init_cash", -5, "greater than 0"),
        ({"start": "soon"}, "body.start", "soon", "epoch milliseconds"),
        ({"end": "2029-12-31"}, "body.end", 1_893_369_600_000, "give end >= start"),
    ],
)
def test_a_bad_option_is_a_422_problem_naming_the_field_the_value_and_the_fix(
    api: Api, options: dict, field: str, value, fix: str
) -> None:
    _, ana = _trader(api)
    refused = api.client.post("/sessions", json=NEW | options, headers=ana)
    assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
    [problem] = [e for e in refused.json()["errors"] if e["field"] == field]
    if value is not None:
        assert problem["value"] == value
    assert fix in problem["fix"], problem
    assert api.client.get("/sessions", headers=ana).json()["items"] == []  # nothing written


def test_a_name_in_use_is_a_409(api: Api) -> None:
    _, ana = _trader(api)
    _make(api, ana)
    again = api.client.post("/sessions", json=NEW, headers=ana)
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
