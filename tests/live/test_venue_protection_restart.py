"""Protective legs on a venue across an engine restart (``live.venue_protection`` rules 3 and
6): a new engine object on the same database behaves as the one it replaces.

The session runs on the loopback Binance spot venue through the real ccxt client, its entries
decided by the champion on the bundled 1m sample. A restart drops the engine object (what it
kept in memory is gone) and builds a new one on the same store, as a process restart does.

Expected values are worked out by hand: the ATR is Wilder's over the sample's candles (true
range ``max(h - l, |h - prev close|, |l - prev close|)``, the mean of the first 14, then
``atr = (13 * atr + tr) / 14``), written here again; the trailing test compares a restarted
run with an uninterrupted one on the same bars."""

from __future__ import annotations

import asyncio
from functools import partial

import pytest
from exchange_server import BinanceLoopback

from live.engine import LiveEngine
from live.orders import request_of
from live.runner import replay_feed
from tests.live.conftest import World, trained_world  # noqa: F401  (shared fixture)
from tests.live.test_venue_protection import PAIR, audits, engine_with, held, list_native_stops, rows
from tests.live.venue_session import run_bars, session_config, venue_settings
from tradeloop.trading import OrderStatus

ATR_WINDOW = 14  # BacktestConfig's default atr_window
FILL = 17_300.0  # the venue's price when the entry fills: not the decision bar's close


class Crash(Exception):
    """The engine process dies here: nothing after this point of its bar runs."""


def wilder_atr(highs: list[float], lows: list[float], closes: list[float]) -> float:
    """Wilder's ATR at the last candle (the module docstring's arithmetic)."""
    ranges = [
        max(h - lo, abs(h - c0), abs(lo - c0)) for h, lo, c0 in zip(highs[1:], lows[1:], closes[:-1], strict=True)
    ]
    atr = sum(ranges[:ATR_WINDOW]) / ATR_WINDOW
    for tr in ranges[ATR_WINDOW:]:
        atr = (atr * (ATR_WINDOW - 1) + tr) / ATR_WINDOW
    return atr


def crash_at(engine: LiveEngine, stage: str) -> None:
    """Make ``engine`` die at ``stage`` of the bar that sends the entry: ``committed`` (the bar
    committed, the create not sent) or ``submitted`` (the venue took and filled it, its answer
    was never stored)."""
    if stage == "committed":

        async def send(orders) -> None:
            raise Crash

        engine._send = send  # type: ignore[method-assign]
    elif stage == "submitted":
        submit = engine.broker.submit

        async def submitted(order):
            await submit(request_of(order))
            raise Crash

        engine._submit = submitted  # type: ignore[method-assign]


def run_engine(engine: LiveEngine, scenario) -> None:
    async def main() -> None:
        try:
            await scenario(engine)
        finally:
            await engine.broker.close()

    asyncio.run(main())


@pytest.mark.parametrize("stage", ["committed", "submitted", "resting"])
def test_an_atr_stop_armed_after_a_restart_is_measured_from_the_fill_with_the_decision_bars_atr(
    trained_world: World, tmp_path, stage: str
) -> None:
    """``atr_stop=2``: the entry is decided on bar D (its stop stored at close(D) - 2 * ATR(D)),
    the engine dies before it learns the fill (before the create, after it, or while the entry
    rests on the venue), and the new engine learns it: a fill at 17300. The stop goes out at
    17300 - 2 * ATR(D), the ATR of D's close, for the filled quantity."""
    name = f"atr-restart-{stage}"
    orders = {"atr_stop": 2.0}
    with BinanceLoopback(
        candles={}, prices={PAIR: FILL}, balances={"BUSD": 10_000.0}, hold_orders=stage == "resting"
    ) as server:
        list_native_stops(server)
        settings = venue_settings(trained_world, server, f"sqlite:///{tmp_path / 'ops.db'}")

        async def until_the_entry(engine: LiveEngine) -> None:
            await engine.reconcile()
            crash_at(engine, stage)
            if stage == "resting":
                await run_bars(engine, settings, name, until=lambda e: "enter_long" in rows(e))
                assert rows(engine)["enter_long"].status == OrderStatus.ACKNOWLEDGED  # on the venue, unfilled
                return  # the engine object is dropped here: a crash
            with pytest.raises(Crash):
                await run_bars(engine, settings, name, until=lambda e: False)

        run_engine(engine_with(settings, server, name, orders), until_the_entry)

        async def after_the_restart(engine: LiveEngine) -> None:
            await engine.reconcile()
            if stage == "resting":
                server.fill_held()  # the venue fills it; the engine learns it at its next venue check
            await run_bars(engine, settings, name, until=lambda e: rows(e)["stop_loss"].status != "new", limit=2)

        restarted = engine_with(settings, server, name, orders)
        run_engine(restarted, after_the_restart)

        by = rows(restarted)
        entry, stop = by["enter_long"], by["stop_loss"]
        assert entry.status == OrderStatus.FILLED and entry.avg_price == pytest.approx(FILL)
        history = replay_feed(settings, session_config(name)).history(before_ts=entry.decided_ts + 1, bars=100_000)
        atr = wilder_atr(list(history["high"]), list(history["low"]), list(history["close"]))
        close = float(history["close"][-1])
        assert abs(close - FILL) > 10.0  # the decision's stored trigger is not the answer
        expected = FILL - 2.0 * atr
        assert stop.trigger_price == pytest.approx(expected, rel=1e-9)
        assert stop.quantity == pytest.approx(entry.filled_qty)
        venue_stop = server.orders[stop.client_order_id]
        assert venue_stop["type"] == "STOP_LOSS" and float(venue_stop["stopPrice"]) == pytest.approx(round(expected, 2))
        assert server.creates[entry.client_order_id] == 1 and server.creates[stop.client_order_id] == 1
        [armed] = audits(restarted, "protection_armed")
        assert armed.detail["trigger_price"] == pytest.approx(expected, rel=1e-9)


TRAIL_BARS = 14  # bars after the entry filled, compared one by one
# restarts after the 6th bar (the 7th makes the peak: the first bar after a restart counts) and
# after the 9th (the price then stays below that peak while the ATR falls: the stop still rises)
RESTARTS = (6, 9)
TRAIL_FILL = 17_100.0


def trailing_trigger(engine: LiveEngine) -> tuple[str, float | None]:
    leg = rows(engine)["trailing_stop"]
    return leg.client_order_id, leg.trigger_price


def trailing_run(world: World, database: str, segments: tuple[int, ...]) -> list[tuple[str, float | None]]:
    """The trailing leg (client id, trigger) after each bar after the entry filled, up to
    ``segments[-1]`` bars; a new engine on the same database after each of ``segments[:-1]``
    bars (a restart). Checks one stop lives on the venue and the peak stored is the fill's or
    a bar's high since."""
    name, seen = "trail-restart", list[tuple[str, float | None]]()
    with BinanceLoopback(candles={}, prices={PAIR: TRAIL_FILL}, balances={"BUSD": 10_000.0}) as server:
        list_native_stops(server)
        settings = venue_settings(world, server, database)

        def record(engine: LiveEngine, bars: int) -> bool:
            seen.append(trailing_trigger(engine))
            return len(seen) >= bars

        async def segment(engine: LiveEngine, *, first: bool, bars: int) -> None:
            await engine.reconcile()
            if first:
                await run_bars(engine, settings, name, until=lambda e: held(e) > 0)
                server.trade(PAIR, 30_000.0)  # the venue's price far above every stop: none fires
            await run_bars(engine, settings, name, until=lambda e: record(e, bars), limit=bars)

        for n, bars in enumerate(segments):
            engine = engine_with(settings, server, name, {"atr_trailing": 3.0})  # the first, or after a restart
            run_engine(engine, partial(segment, first=n == 0, bars=bars))
        live = [o["clientOrderId"] for o in server.book if o["status"] == "NEW" and o["type"] == "STOP_LOSS"]
        assert live == [seen[-1][0]]  # one live stop, the one the database holds
        last = engine.store.session(name).last_bar_ts
        highs = replay_feed(settings, session_config(name)).history(before_ts=last + 1, bars=len(seen))["high"]
        assert rows(engine)["trailing_stop"].extreme == pytest.approx(max(TRAIL_FILL, *highs))
    return seen


def test_a_trailing_stop_follows_the_true_peak_across_restarts(trained_world: World, tmp_path) -> None:
    """``atr_trailing=3``, native stops: after the entry filled (at 17100) the trailing stop is
    moved bar by bar by cancel-replace to peak - 3 * ATR. A run restarted twice within 14 bars
    stores, bar for bar, the triggers (and client ids) of a run never interrupted: the peak
    (and the bar the legs were armed on) survives a restart, so a peak from before it still
    counts. The peak stored is the highest of the fill and the 14 bars' highs."""
    plain = trailing_run(trained_world, f"sqlite:///{tmp_path / 'plain.db'}", (TRAIL_BARS,))
    restarted = trailing_run(trained_world, f"sqlite:///{tmp_path / 'restarted.db'}", (*RESTARTS, TRAIL_BARS))
    assert len({cid for cid, _ in plain}) > 5  # it moved bar after bar
    assert [cid for cid, _ in restarted] == [cid for cid, _ in plain]
    assert [t for _, t in restarted] == pytest.approx([t for _, t in plain], rel=1e-9)
