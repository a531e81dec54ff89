"""`tradeloop live run` on paper with symbols on two venues (`BTC-BUSD` on the session's
exchange, `kraken:BTC-USDT` elsewhere): the lake's series of both venues are replayed as one
universe, each instrument is decided and filled on its own candles, and positions are kept per
venue; a live session on two venues whose second venue has no keys is refused before anything
is written, naming the variables to set."""

from __future__ import annotations

import shutil

import polars as pl

from tests.live.conftest import World, trained_world  # noqa: F401  (shared fixture)
from tests.live.venue_session import START, SYMBOL, tradeloop
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.ops import EquityPoint, OpsStore
from tradeloop.settings import Settings

OTHER = "kraken:BTC-USDT"


def test_a_paper_session_replays_two_venues_as_one_universe(trained_world: World, tmp_path) -> None:
    root = tmp_path / "data"
    shutil.copytree(trained_world.settings.lake_dir, root / "lake")
    shutil.copytree(trained_world.settings.registry_dir, root / "registry")
    lake = CandleLake(root / "lake")
    binance = lake.read(SeriesKey("binance", SYMBOL, "1m"))
    kraken = binance.with_columns(pl.col(c) * 1.05 for c in ("open", "high", "low", "close"))  # 5% apart
    lake.write(SeriesKey("kraken", "BTC-USDT", "1m"), kraken)
    settings = Settings(TRADELOOP_DATA_DIR=str(root))
    common = [
        "--exchange",
        "binance",
        "--symbol",
        SYMBOL,
        "--symbol",
        OTHER,
        "--timeframe",
        "1m",
        "--start",
        str(START),
    ]

    own_keys = {"TRADELOOP_EXCHANGE_API_KEY": "binance-key", "TRADELOOP_EXCHANGE_SECRET": "binance-secret"}
    one_quote = [w.replace(OTHER, "kraken:BTC-BUSD") for w in common]  # live: one quote asset (live.session_brokers)
    refused = tradeloop(
        "live", "run", "--name", "two-live", "--mode", "live", *one_quote, settings=settings, env=own_keys
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "on kraken and needs its API key and secret" in refused.stderr
    assert "TRADELOOP_VENUES__KRAKEN__API_KEY and TRADELOOP_VENUES__KRAKEN__SECRET" in refused.stderr
    assert "binance-secret" not in refused.stderr

    done = tradeloop("live", "run", "--name", "two", "--allow-in-sample", *common, settings=settings)
    assert done.returncode == 0, done.stdout + done.stderr
    store = OpsStore.open(settings.effective_database_url)
    session = store.session("two")
    assert [s.name for s in store.sessions()] == ["two"]  # the refused one wrote nothing
    marks = store.frame(EquityPoint, session.id)
    bars = binance.filter(pl.col("ts") >= START)["ts"].to_list()
    assert marks["ts"].sort().to_list() == bars  # every bar of the merged replay decided once
    orders = store.orders(session.id)
    assert {o.symbol for o in orders} == {SYMBOL, OTHER}  # each instrument traded on its own candles
    closes = {
        (sym, ts): c
        for sym, frame in ((SYMBOL, binance), (OTHER, kraken))
        for ts, c in frame.select("ts", "close").iter_rows()
    }
    for fill in store.fills(session.id):  # a paper fill is at its own venue's prices, not the other's
        assert any(abs(fill.price / closes[(fill.symbol, ts)] - 1) < 0.01 for ts in (fill.ts, fill.ts - 60_000)
                   if (fill.symbol, ts) in closes)  # fmt: skip
    venues = (
        {(p.venue, p.symbol) for p in store.position_rows(session.id)} if hasattr(store, "position_rows") else set()
    )
    assert venues <= {("binance", SYMBOL), ("kraken", "BTC-USDT")} and venues
