"""A bad stored bar never wedges a live session: the replay feed skips it and the engine
writes a ``candle_skipped`` audit row.

The bad rows are written straight with polars, as an older tradeloop (before the import
rules refused them) would have stored them.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import polars as pl
import pytest

from live.feeds.replay import ReplayFeed
from tests.live.conftest import SYMBOLS, World, make_settings
from tradeloop.data import CandleLake, SeriesKey

STEP = 4 * 3_600_000
FUTURE = 1_924_992_000_000  # 2031-01-01 00:00 UTC, on the 4h grid


def key(symbol: str) -> SeriesKey:
    return SeriesKey("coinbase", symbol, "4h")


def copy_world(world: World, root: Path) -> CandleLake:
    """The trained world's lake and registry in a folder of this test's own."""
    shutil.copytree(world.settings.lake_dir, root / "lake")
    shutil.copytree(world.settings.registry_dir, root / "registry")
    return CandleLake(root / "lake")


def series_dir(lake: CandleLake, symbol: str) -> Path:
    return lake.root / "coinbase" / symbol / "4h"


def plant_bad_bars(lake: CandleLake) -> dict[str, int]:
    """A NaN close in BTC's 2025 file, an off-grid row in ETH's, and a BTC bar dated 2031."""
    btc = series_dir(lake, "BTC-USD") / "2025.parquet"
    frame = pl.read_parquet(btc)
    nan_ts = int(frame["ts"][-5])
    frame.with_columns(
        pl.when(pl.col("ts") == nan_ts).then(float("nan")).otherwise(pl.col("close")).alias("close")
    ).write_parquet(btc)
    frame.tail(1).with_columns(ts=pl.lit(FUTURE, dtype=pl.Int64)).write_parquet(
        series_dir(lake, "BTC-USD") / "2031.parquet"
    )
    eth = series_dir(lake, "ETH-USD") / "2025.parquet"
    frame = pl.read_parquet(eth)
    off_ts = int(frame["ts"][-8]) + 1
    frame.with_columns(
        pl.when(pl.int_range(pl.len()) == frame.height - 8).then(off_ts).otherwise(pl.col("ts")).alias("ts")
    ).write_parquet(eth)
    return {"nan": nan_ts, "off": off_ts}


def feed(lake: CandleLake, **options) -> tuple[ReplayFeed, list[tuple[str, int | None, str]]]:
    seen: list[tuple[str, int | None, str]] = []
    replay = ReplayFeed(
        lake,
        exchange="coinbase",
        symbols=list(SYMBOLS),
        timeframe="4h",
        on_rejected=lambda *report: seen.append(report),
        **options,
    )
    return replay, seen


async def take(iterator, n: int) -> list:
    return [await anext(iterator) for _ in range(n)]


def test_the_replay_feed_skips_bad_bars_and_reports_each_once(trained_world: World, tmp_path: Path) -> None:
    lake = copy_world(trained_world, tmp_path)
    bad = plant_bad_bars(lake)
    last_real = int(trained_world.candles["ts"].max())
    replay, seen = feed(lake, start=last_real - 40 * STEP)

    async def run() -> list:
        return [b async for b in replay.batches()]

    batches = asyncio.run(run())
    assert batches[-1].ts == last_real  # the 2031 bar never came
    delivered = pl.concat([b.candles for b in batches])
    assert delivered["close"].is_finite().all() and (delivered["ts"] % STEP == 0).all()
    assert delivered.filter(pl.col("ts") == bad["nan"])["symbol"].to_list() == ["ETH-USD"]
    assert sorted(seen) == sorted(
        [
            ("BTC-USD", bad["nan"], "non_finite"),
            ("ETH-USD", bad["off"], "off_grid"),
            ("BTC-USD", FUTURE, "future_dated"),
        ]
    )
    assert replay.history(before_ts=last_real, bars=400)["close"].is_finite().all()


def test_a_held_back_bar_does_not_stop_the_bars_after_it(trained_world: World, tmp_path: Path) -> None:
    """Follow mode: real bars stored later still come; the 2031 bar is reported once."""
    lake = copy_world(trained_world, tmp_path)
    plant_bad_bars(lake)
    last_real = int(trained_world.candles["ts"].max())
    replay, seen = feed(lake, start=last_real - 2 * STEP, follow_s=0.01)
    batches = replay.batches()

    async def scenario() -> tuple[list, list]:
        first = await take(batches, 3)
        tail = pl.concat(
            pl.read_parquet(series_dir(lake, s) / "2025.parquet").tail(1).with_columns(symbol=pl.lit(s))
            for s in SYMBOLS
        )
        for symbol in SYMBOLS:  # two new real bars, as `tradeloop data ingest` would add them
            new = pl.concat(
                [
                    tail.filter(pl.col("symbol") == symbol).drop("symbol").with_columns(pl.col("ts") + k * STEP)
                    for k in (1, 2)
                ]
            )
            lake.write(key(symbol), new)
        later = await take(batches, 2)
        await batches.aclose()
        return first, later

    first, later = asyncio.run(scenario())
    assert [b.ts for b in first] == [last_real - 2 * STEP, last_real - STEP, last_real]
    assert [b.ts for b in later] == [last_real + STEP, last_real + 2 * STEP]
    assert [r for r in seen if r[2] == "future_dated"] == [("BTC-USD", FUTURE, "future_dated")]


def test_a_venue_that_resumes_after_a_long_outage_is_not_held_back(trained_world: World, tmp_path: Path) -> None:
    """A contiguous run after a gap of more than ``max_jump_bars`` is real data, not a bad date."""
    lake = copy_world(trained_world, tmp_path)
    last_real = int(trained_world.candles["ts"].max())
    replay, seen = feed(lake, start=last_real - 30 * STEP, max_jump_bars=5, confirm_bars=3)
    btc = trained_world.candles.filter(pl.col("symbol") == "BTC-USD", pl.col("ts") >= last_real - 30 * STEP)
    # drop 10 bars of BTC and ETH: an outage twice as long as max_jump_bars
    outage = pl.col("ts").is_between(last_real - 20 * STEP, last_real - 11 * STEP)
    for symbol in SYMBOLS:
        for path in series_dir(lake, symbol).glob("*.parquet"):
            pl.read_parquet(path).filter(~outage).write_parquet(path)

    async def run() -> list:
        return [b.ts async for b in replay.batches()]

    delivered = asyncio.run(run())
    assert delivered == [t for t in btc["ts"].to_list() if not (last_real - 20 * STEP <= t <= last_real - 11 * STEP)]
    assert seen == []


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_engine_skips_a_future_dated_bar_with_an_audit_row(
    trained_world: World, tmp_path: Path, database: str, request
) -> None:
    """Before: the 2031 bar became the session's last bar, and every real bar after a restart
    was skipped as already seen. Now it is skipped with an audit row and the session goes on."""
    from live.runner import SessionConfig, run_session
    from tradeloop.ops import OpsStore

    lake = copy_world(trained_world, tmp_path)
    bad = plant_bad_bars(lake)
    last_real = int(trained_world.candles["ts"].max())
    extra = {"DATABASE_URL": request.getfixturevalue("pg_url")} if database == "postgresql" else {}
    settings = make_settings(tmp_path, **extra)
    name = f"bad-bars-{database}"
    start = last_real - 60 * STEP
    engine = asyncio.run(run_session(settings, SessionConfig(name=name, start=start, window_bars=400)))
    # every bar time still has a good candle of one symbol at least: none is lost
    assert engine.bars == trained_world.candles.filter(pl.col("ts") >= start)["ts"].n_unique()
    store = OpsStore.open(settings.effective_database_url)
    session = store.session(name)
    assert session.last_bar_ts == last_real
    skipped = [e.detail for e in store.audit_log(session.id) if e.event == "candle_skipped"]
    assert sorted((d["symbol"], d["ts"], d["rule"]) for d in skipped) == sorted(
        [
            ("BTC-USD", bad["nan"], "non_finite"),
            ("ETH-USD", bad["off"], "off_grid"),
            ("BTC-USD", FUTURE, "future_dated"),
        ]
    )
    # the venue goes on: two new real bars are stored, and a restart trades them
    for symbol in SYMBOLS:
        tail = pl.read_parquet(series_dir(lake, symbol) / "2025.parquet").sort("ts").tail(1)
        lake.write(key(symbol), pl.concat([tail.with_columns(pl.col("ts") + k * STEP) for k in (1, 2)]))
    engine = asyncio.run(run_session(settings, SessionConfig(name=name, start=start, window_bars=400)))
    assert engine.bars == 2
    assert store.session(name).last_bar_ts == last_real + 2 * STEP
    store.close()
