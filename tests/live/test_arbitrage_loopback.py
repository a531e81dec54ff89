"""Arbitrage detection on two loopback venues speaking Binance's wire format (``binance`` and
``binanceus``: the real ccxt.pro clients, their ``<symbol>@bookTicker`` streams): the venues'
book tickers reach the scanner as quotes; ``tradeloop arbitrage run`` as its own process, with
the taker fees of the venues' ccxt markets (0.1% each), opens exactly one opportunity while
binanceus's bid stays above binance's ask by more than both fees, updates it and closes it,
stores it in PostgreSQL with its gross and net spread and size, publishes each event on the
real Redis and lists it through GET /arbitrage/opportunities, and trades nothing; a spread the
fees eat opens nothing; with ``--paper-execute`` the opening's two legs are paper-filled at the
quotes that opened it, once, sized by the inventory held; bad options are refused before any
connection."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from exchange_server import BinanceLoopback
from ws_exchange_server import BinanceWsLoopback

from live.arbitrage import EXECUTIONS, STREAM, merge_tops, taker_fees, watch_book_tickers
from live.arbitrage_paper import EXECUTED
from tests.api.conftest import start_api
from tests.conftest import REDIS_URL, throwaway_database
from tradeloop.bus import decode
from tradeloop.data.exchanges import make_exchange
from tradeloop.identity import Role
from tradeloop.ops import OpsStore
from tradeloop.ops.market_store import MarketStore
from tradeloop.ops.session_reads import Page

ROOT = Path(__file__).resolve().parents[2]
FEE = 0.001  # ccxt's taker rate for binance and binanceus spot markets
QUIET = (99.95, 1.0, 100.05, 1.0)  # binanceus when no spread is open
# binance: a steady book, ask 100.00 for 1.5
BINANCE = {"BTCUSDT": [(99.90, 2.0, 100.00, 1.5)] * 16, "ETHUSDT": [(99.90, 2.0, 100.00, 1.5)] * 16}
# binanceus: its BTC bid climbs over binance's ask by more than both fees (40, 45, 50 bps gross), then falls
# back; its ETH bid stays 15 bps over binance's ask: less than the 20 bps the two taker fees cost
GOOD = [(100.40, 0.8, 100.50, 1.0), (100.45, 0.6, 100.55, 1.0), (100.50, 0.5, 100.60, 1.0)]
BINANCEUS = {
    "BTCUSDT": [QUIET] * 3 + GOOD[:2] + [GOOD[2]] * 3 + [QUIET] * 8,
    "ETHUSDT": [(100.15, 1.0, 100.25, 1.0)] * 16,
}
# Top of book is the latest quote: a ccxt.pro client that is slow to ask again skips what came
# meanwhile (nothing queues ticker messages), so the checks below hold with quotes skipped.


def net_bps(ask: float, bid: float) -> float:
    """Buying at ``ask`` and selling at ``bid`` after both taker fees, in bps of the buy."""
    return (bid * (1 - FEE) - ask * (1 + FEE)) / ask * 1e4


@contextlib.contextmanager
def two_venues(gate: threading.Event | None = None):
    """binance and binanceus on loopback: REST (exchangeInfo) and WebSocket (book tickers)."""
    with contextlib.ExitStack() as stack:
        venues = {}
        for venue, script in (("binance", BINANCE), ("binanceus", BINANCEUS)):
            rest = stack.enter_context(BinanceLoopback(candles={}))
            ws = stack.enter_context(BinanceWsLoopback({}, pace_s=0.05, book_tickers=script, quotes_gate=gate))
            venues[venue] = (rest, ws)
        yield venues


def test_book_tickers_arrive_as_quotes_with_the_markets_taker_fees() -> None:
    ladder = {"BTCUSDT": [(100.0 + i, 1.0 + i, 100.5 + i, 2.0 + i) for i in range(16)]}  # each quote its own
    with contextlib.ExitStack() as stack:
        clients = {}
        for venue in ("binance", "binanceus"):
            rest = stack.enter_context(BinanceLoopback(candles={}))
            ws = stack.enter_context(BinanceWsLoopback({}, pace_s=0.05, book_tickers=ladder))
            clients[venue] = make_exchange(venue, timeout_s=5.0, api_url=rest.url, websocket=True, ws_url=ws.url)

        async def run() -> tuple[dict, list]:
            out = []
            tops = merge_tops(*(watch_book_tickers(c, ["BTC/USDT"]) for c in clients.values()))
            try:
                fees = await taker_fees(clients, ["BTC/USDT", "ETH/USDT"], overrides={"binanceus": 0.00075})
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):  # the ladders take 0.8 s
                        async for top in tops:
                            out.append(top)
                return fees, out
            finally:
                await tops.aclose()
                await asyncio.gather(*(c.close() for c in clients.values()))

        fees, tops = asyncio.run(run())
    assert fees == {"binance": FEE, "binanceus": 0.00075}
    script = ladder["BTCUSDT"]
    for venue in ("binance", "binanceus"):
        got = [(t.bid, t.bid_size, t.ask, t.ask_size) for t in tops if t.venue == venue]
        assert len(got) >= len(script) // 2, (venue, len(got))
        assert all(q in script for q in got) and got == sorted(got)  # the venue's quotes, in order
    assert {t.symbol for t in tops} == {"BTC/USDT"}
    now = time.time() * 1000
    assert all(now - 30_000 < t.ts <= now for t in tops)  # no time in the message: stamped on arrival


def wait_for(check, *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def published_on(redis_prefix: str, stream: str = STREAM) -> list[dict]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return [decode(i, f).data for i, f in client.xrange(f"{redis_prefix}:{stream}")]
    finally:
        client.close()


def run_arbitrage(db: str, tmp_path: Path, redis_prefix: str, *extra: str) -> str:
    """``tradeloop arbitrage run`` as its own process on the two loopback venues, from the
    first quote of both scripts to the close of the opportunity; its output."""
    gate = threading.Event()
    with two_venues(gate) as venues:
        args = ["arbitrage", "run", "--venue", "binance", "--venue", "binanceus"]
        args += ["--symbol", "BTC-USDT", "--symbol", "ETH-USDT", *extra]
        for venue, (rest, ws) in venues.items():
            args += ["--api-url", f"{venue}={rest.url}", "--ws-url", f"{venue}={ws.url}"]
        env = {**os.environ, "DATABASE_URL": db, "REDIS_URL": REDIS_URL, "TRADELOOP_REDIS_PREFIX": redis_prefix,
               "TRADELOOP_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, "-m", "tradeloop", *args], env=env, cwd=ROOT, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            streams = {"btcusdt@bookTicker", "ethusdt@bookTicker"}
            wait_for(lambda: all(streams <= set(ws.subscriptions) for _, ws in venues.values()), timeout_s=40,
                     what="both venues' book ticker subscriptions")  # fmt: skip
            gate.set()  # both venues' scripts start together
            wait_for(lambda: any(e["kind"] == "closed" for e in published_on(redis_prefix)), timeout_s=20,
                     what="the close")  # fmt: skip
            wait_for(lambda: all(ws.quoted == {"BTCUSDT": 16, "ETHUSDT": 16} for _, ws in venues.values()),
                     timeout_s=10, what="every quote sent")  # fmt: skip
            time.sleep(0.3)  # the last quotes reach the scanner
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    return out


def test_arbitrage_run_detects_stores_publishes_and_lists_one_opportunity(tmp_path, redis_prefix) -> None:
    with contextlib.ExitStack() as stack:
        db = stack.enter_context(throwaway_database("tradeloop_arb"))
        running = stack.enter_context(contextlib.contextmanager(start_api)(tmp_path, db))
        out = run_arbitrage(db, tmp_path, redis_prefix)
        events = published_on(redis_prefix)
        stored = MarketStore(running.ctx.store).opportunities(Page(limit=10))
        sessions = running.ctx.store.sessions()
        running.user("vera", Role.VIEWER)
        listed = running.client.get("/arbitrage/opportunities", headers=running.login("vera"))

    assert sessions == [] and published_on(redis_prefix, EXECUTIONS) == []  # detection only: nothing traded
    assert "paper" not in out
    assert "taker fees {'binance': 0.001, 'binanceus': 0.001}" in out
    for venue in ("binance", "binanceus"):  # the ETH quotes were scanned too (each venue's all alike)
        assert re.search(rf"^{venue} ETH/USDT: [1-9][0-9]* quote\(s\)$", out, re.M), out
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "opened" and kinds[-1] == "closed" and set(kinds[1:-1]) <= {"updated"}, kinds
    assert {(e["symbol"], e["buy_venue"], e["sell_venue"]) for e in events} == {("BTC/USDT", "binance", "binanceus")}
    assert len({e["id"] for e in events}) == 1 and len({e["start_ts"] for e in events}) == 1  # one opportunity

    (row,) = stored  # nothing on ETH: 15 bps gross, -5 bps net
    assert (row.symbol, row.buy_venue, row.sell_venue) == ("BTC/USDT", "binance", "binanceus")
    assert row.id == events[0]["id"] and row.start_ms == events[0]["start_ts"] and row.end_ms == events[-1]["end_ts"]
    assert 0 <= row.end_ms - row.start_ms < 5_000
    # its figures are those of the last quote before it closed: buy 1.5 at 100.00, sell 0.5 at 100.50
    assert (row.buy_price, row.sell_price, row.size) == (100.00, 100.50, 0.5)
    assert row.gross_bps == pytest.approx(50.0)
    assert row.net_bps == pytest.approx(net_bps(100.00, 100.50)) == pytest.approx(29.95)
    assert row.net_profit == pytest.approx(0.5 * (100.50 * (1 - FEE) - 100.00 * (1 + FEE)))
    assert row.best_net_bps == pytest.approx(29.95)
    assert events[-1]["net_bps"] == pytest.approx(29.95) and events[-1]["duration_ms"] == row.end_ms - row.start_ms
    assert net_bps(100.00, 100.15) < 0 < 100.15 - 100.00  # the ETH spread: gross positive, net negative
    assert events[0]["sell_price"] in {q[0] for q in GOOD}

    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["items"]
    assert (item["id"], item["symbol"], item["end_ms"], item["size"]) == (row.id, "BTC/USDT", row.end_ms, 0.5)
    assert item["net_bps"] == pytest.approx(29.95) and item["gross_bps"] == pytest.approx(50.0)


def test_arbitrage_run_paper_executes_both_legs_of_the_opening(tmp_path, redis_prefix) -> None:
    funded = ["--inventory", "binance=USDT:1000", "--inventory", "binanceus=BTC:0.3,USDT:0"]  # 0.3 BTC to sell
    with throwaway_database("tradeloop_arbpaper") as db:
        out = run_arbitrage(db, tmp_path, redis_prefix, "--paper-execute", "--max-notional", "1000", *funded)
        store = OpsStore.open(db)
        try:
            (session,) = store.sessions()
            orders, fills = store.orders(session.id), store.fills(session.id)
            (row,) = MarketStore(store).opportunities(Page())
            executed = store.audit_log(session.id, events=(EXECUTED,))
        finally:
            store.close()
    opened = published_on(redis_prefix)[0]
    (done,) = published_on(redis_prefix, EXECUTIONS)  # once, whatever updates followed
    sell_price = opened["sell_price"]  # binanceus's bid when it opened: one of GOOD's
    assert opened["kind"] == "opened" and sell_price in {q[0] for q in GOOD}

    assert (session.name, session.mode, session.strategy) == ("arbitrage-paper", "paper", "arbitrage")
    assert len(orders) == 2 and len(fills) == 2
    buy, sell = sorted(orders, key=lambda o: o.side)
    assert (buy.symbol, buy.side, buy.status, buy.quantity) == ("binance:BTC-USDT", "buy", "filled", 0.3)
    assert (sell.symbol, sell.side, sell.status, sell.quantity) == ("binanceus:BTC-USDT", "sell", "filled", 0.3)
    paid, got = sorted(fills, key=lambda f: f.side)
    assert (paid.price, got.price) == (100.00, sell_price)  # binance's ask, binanceus's bid
    assert paid.fee == pytest.approx(0.3 * 100.00 * FEE) and got.fee == pytest.approx(0.3 * sell_price * FEE)
    pnl = 0.3 * sell_price * (1 - FEE) - 0.3 * 100.00 * (1 + FEE)
    assert done["id"] == row.id and done["limited_by"] == "BTC held on binanceus"
    assert done["realised_net_profit"] == pytest.approx(pnl) == executed[0].detail["realised_net_profit"]
    assert (
        done["realised_net_bps"]
        == pytest.approx(net_bps(100.00, sell_price))
        == pytest.approx(done["predicted_net_bps"])
    )
    assert "paper execution into session 'arbitrage-paper'" in out and "1 pair(s) paper-executed" in out


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--venue", "binance"], "compare two venues at least"),
        (["--venue", "binance", "--venue", "binanse"], "did you mean 'binance'"),
        (["--venue", "binance", "--venue", "kraken", "--taker-fee", "okx=0.001"], "which is no --venue"),
        (["--venue", "binance", "--venue", "kraken", "--taker-fee", "kraken=1%"], "between 0 and 0.1"),
        (["--venue", "binance", "--venue", "kraken", "--ws-url", "kraken"], "write VENUE=VALUE"),
        (["--venue", "binance", "--venue", "kraken", "--max-size", "0"], "--max-size=0"),
        (["--venue", "binance", "--venue", "kraken", "--max-notional", "100"], "only with --paper-execute"),
        (
            ["--venue", "binance", "--venue", "kraken", "--paper-execute", "--inventory", "kraken=BTC:1"],
            "needs --max-notional",
        ),
        (["--venue", "binance", "--venue", "kraken", "--paper-execute", "--max-notional", "100"], "needs --inventory"),
        (
            [
                "--venue",
                "binance",
                "--venue",
                "kraken",
                "--paper-execute",
                "--max-notional",
                "0",
                "--inventory",
                "kraken=BTC:1",
            ],
            "--max-notional=0",
        ),
        (
            [
                "--venue",
                "binance",
                "--venue",
                "kraken",
                "--paper-execute",
                "--max-notional",
                "100",
                "--inventory",
                "okx=BTC:1",
            ],
            "which is no --venue",
        ),
        (
            [
                "--venue",
                "binance",
                "--venue",
                "kraken",
                "--paper-execute",
                "--max-notional",
                "100",
                "--inventory",
                "kraken=BTC",
            ],
            "no ASSET:AMOUNT",
        ),
    ],
)
def test_arbitrage_run_refuses_bad_options_before_connecting(args: list[str], said: str) -> None:
    from typer.testing import CliRunner

    from tradeloop.cli.main import app

    result = CliRunner().invoke(app, ["arbitrage", "run", *args])
    assert result.exit_code == 2 and said in result.output, result.output


def test_arbitrage_run_on_an_unreachable_venue_is_an_exchange_error(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from tests.api.conftest import free_port
    from tradeloop.cli.main import app
    from tradeloop.settings import get_settings

    for name in ("REDIS_URL", "DATABASE_URL", "TRADELOOP_EXCHANGE_API_URL", "TRADELOOP_EXCHANGE_WS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRADELOOP_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    args = ["--venue", "binance", "--venue", "binanceus", "--api-url", f"binance={closed}"]
    try:
        result = CliRunner().invoke(app, ["arbitrage", "run", *args, "--api-url", f"binanceus={closed}"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 4, result.output
    assert "arbitrage stopped: ExchangeNotAvailable" in result.output and closed in result.output
