"""The risk stage of a session split in capital slices (``live.slice_risk``,
``tradeloop.challengers.slices`` rule 2): each slice's intents meet its own limits (amounts
scaled by its share), and the intents every slice approved meet the session's limits together,
so a combined cap can refuse what each slice alone may do."""

from __future__ import annotations

from pathlib import Path

import pytest

from live.risk_stage import portfolio_snapshot
from live.slice_risk import CHAMPION, SliceIntents, pre_trade_slices, whole_snapshot
from tradeloop.challengers.slices import slice_risk_config
from tradeloop.errors import ConfigError
from tradeloop.ops import OpsStore, TradingSession
from tradeloop.portfolio import CashFlowKind, Portfolio
from tradeloop.risk import RiskConfig, RiskState
from tradeloop.trading import FillRecord, InstrumentId, OrderIntent, OrderIntentKind, OrderSide

BTC, ETH, SOL = (InstrumentId("binance", s) for s in ("BTC-USDT", "ETH-USDT", "SOL-USDT"))
PRICES = {BTC: 50_000.0, ETH: 2_500.0, SOL: 100.0}
CHALLENGER = "c0ffee" * 10


def _session(tmp_path: Path) -> tuple[OpsStore, TradingSession]:
    store = OpsStore.open(f"sqlite:///{tmp_path / 'ops.db'}")
    session = store.create_session(
        name="split", strategy="sma_cross", exchange="binance", timeframe="1h", symbols=[i.symbol for i in PRICES],
        mode="paper", init_cash=10_000.0, config={},
    )  # fmt: skip
    return store, session


def _entry(inst: InstrumentId, quote: float) -> OrderIntent:
    return OrderIntent(
        instrument=inst, side=OrderSide.BUY, kind=OrderIntentKind.ENTER_LONG, quote_amount=quote,
        reference_price=PRICES[inst],
    )  # fmt: skip


def _books(
    config: RiskConfig, champion: tuple[Portfolio, list[OrderIntent]], challenger: tuple[Portfolio, list[OrderIntent]]
) -> list[SliceIntents]:
    """The two books of an 80/20 split, each under its slice's limits."""
    return [
        SliceIntents(name=name, intents=intents, snapshot=portfolio_snapshot(book, PRICES),
                     state=RiskState(slice_risk_config(config, share)))
        for name, share, (book, intents) in ((CHAMPION, 0.8, champion), (CHALLENGER, 0.2, challenger))
    ]  # fmt: skip


def _denials(store: OpsStore, session_id: int) -> list[tuple[str, str, str]]:
    return [
        (a.detail["slice"], a.detail["scope"], a.detail["rule"])
        for a in store.audit_log(session_id, events=("risk_denied",))
    ]


def test_amount_limits_scale_with_the_share_and_fractions_and_counts_stay() -> None:
    config = RiskConfig(max_order_notional=5_000.0, max_position_notional=20_000.0, max_gross_exposure=1.0,
                        max_open_positions=5, max_orders=10)  # fmt: skip
    scaled = slice_risk_config(config, 0.2)
    assert (scaled.max_order_notional, scaled.max_position_notional) == (pytest.approx(1_000.0), pytest.approx(4_000.0))
    kept = ("max_gross_exposure", "max_open_positions", "max_orders", "daily_loss_limit", "max_drawdown", "price_band")
    assert all(getattr(scaled, k) == getattr(config, k) for k in kept)
    with pytest.raises(ConfigError, match="share=0"):
        slice_risk_config(config, 0.0)


def test_each_slice_meets_its_own_scaled_limit(tmp_path: Path) -> None:
    store, session = _session(tmp_path)
    config = RiskConfig(max_order_notional=5_000.0)  # the champion's slice: 4,000 an order; the challenger's: 1,000
    state = RiskState(config)
    books = _books(
        config,
        (Portfolio(cash=8_000.0), [_entry(BTC, 4_500.0), _entry(ETH, 3_000.0)]),
        (Portfolio(cash=2_000.0), [_entry(SOL, 1_200.0), _entry(ETH, 900.0)]),
    )
    with store.transaction() as db:
        approved = pre_trade_slices(db, session=session, books=books, state=state, ts=0, markets={})
    # 4,500 and 1,200 are within the session's 5,000 an order, but not within their slices'
    assert [(n, i.instrument, i.quote_amount) for n, i in approved] == [
        (CHAMPION, ETH, 3_000.0),
        (CHALLENGER, ETH, 900.0),
    ]
    assert _denials(store, session.id) == [
        (CHAMPION, "slice", "max_order_notional"), (CHALLENGER, "slice", "max_order_notional")
    ]  # fmt: skip
    assert state.orders_in_window(0) == 2  # the session's throttle counts what both checks approved
    store.close()


def test_a_combined_cap_refuses_what_each_slice_alone_may_do(tmp_path: Path) -> None:
    store, session = _session(tmp_path)
    config = RiskConfig(max_open_positions=1, max_orders=2)
    state = RiskState(config)
    held = Portfolio(cash=3_000.0)
    held.apply_fill(FillRecord(instrument=BTC, side=OrderSide.BUY, quantity=0.1, price=50_000.0, fee=0.0, ts=0))
    held.add_cash_flow(5_000.0, reason=CashFlowKind.DEPOSIT)  # 8,000 of equity: 5,000 in BTC, 3,000 cash
    exit_btc = OrderIntent(instrument=BTC, side=OrderSide.SELL, kind=OrderIntentKind.EXIT_LONG, quantity=0.1,
                           reference_price=PRICES[BTC], reduce_only=True)  # fmt: skip
    # the challenger's book is flat: an entry is its one open position, within its own count
    books = _books(config, (held, []), (Portfolio(cash=2_000.0), [_entry(ETH, 500.0)]))
    with store.transaction() as db:
        approved = pre_trade_slices(db, session=session, books=books, state=state, ts=0, markets={})
    assert approved == []  # the session would hold BTC and ETH: two open positions, one allowed
    assert _denials(store, session.id) == [(CHALLENGER, "session", "max_open_positions")]

    # the throttle counts every slice's orders: 2 each is within each slice's, 4 are not the session's
    books = _books(
        config,
        (held, [exit_btc, _entry(BTC, 100.0)]),
        (Portfolio(cash=2_000.0), [_entry(ETH, 500.0)]),
    )
    with store.transaction() as db:
        approved = pre_trade_slices(db, session=session, books=books, state=state, ts=60_000, markets={})
    assert [(n, i.kind) for n, i in approved] == [
        (CHAMPION, OrderIntentKind.EXIT_LONG),
        (CHAMPION, OrderIntentKind.ENTER_LONG),
    ]
    assert _denials(store, session.id)[1:] == [(CHALLENGER, "session", "throttle")]
    store.close()


def test_the_whole_book_sums_the_slices() -> None:
    a, b = Portfolio(cash=3_000.0), Portfolio(cash=2_000.0)
    a.apply_fill(FillRecord(instrument=BTC, side=OrderSide.BUY, quantity=0.02, price=50_000.0, fee=0.0, ts=0))
    b.apply_fill(FillRecord(instrument=BTC, side=OrderSide.BUY, quantity=0.01, price=50_000.0, fee=0.0, ts=0))
    whole = whole_snapshot([portfolio_snapshot(a, PRICES), portfolio_snapshot(b, PRICES)])
    assert whole.positions[BTC] == pytest.approx(0.03)
    assert (whole.cash, whole.equity) == (pytest.approx(3_500.0), pytest.approx(5_000.0))


def _opposite_books() -> tuple[Portfolio, Portfolio]:
    """The champion long 0.1 BTC, the challenger short 0.1 BTC: the session nets to flat."""
    champ, challenger = Portfolio(cash=3_000.0), Portfolio(cash=7_000.0)
    champ.apply_fill(FillRecord(instrument=BTC, side=OrderSide.BUY, quantity=0.1, price=50_000.0, fee=0.0, ts=0))
    champ.add_cash_flow(5_000.0, reason=CashFlowKind.DEPOSIT)  # 8,000 of equity
    challenger.apply_fill(FillRecord(instrument=BTC, side=OrderSide.SELL, quantity=0.1, price=50_000.0, fee=0.0, ts=0))
    challenger.add_cash_flow(-5_000.0, reason=CashFlowKind.WITHDRAWAL)  # 2,000 of equity
    return champ, challenger


def test_an_exit_passes_the_session_check_when_the_books_hold_opposite_sides(tmp_path: Path) -> None:
    store, session = _session(tmp_path)
    config = RiskConfig()
    champ, challenger = _opposite_books()
    cover = OrderIntent(instrument=BTC, side=OrderSide.BUY, kind=OrderIntentKind.EXIT_SHORT, quantity=0.1,
                        reference_price=PRICES[BTC], reduce_only=True)  # fmt: skip
    sell = OrderIntent(instrument=BTC, side=OrderSide.SELL, kind=OrderIntentKind.EXIT_LONG, quantity=0.1,
                       reference_price=PRICES[BTC], reduce_only=True)  # fmt: skip
    state = RiskState(config)
    with store.transaction() as db:
        approved = pre_trade_slices(
            db, session=session, books=_books(config, (champ, [sell]), (challenger, [cover])), state=state, ts=0,
            markets={},
        )  # fmt: skip
    assert [(n, i.kind) for n, i in approved] == [
        (CHAMPION, OrderIntentKind.EXIT_LONG),
        (CHALLENGER, OrderIntentKind.EXIT_SHORT),
    ]
    assert _denials(store, session.id) == [] and state.orders_in_window(0) == 2
    store.close()


def test_gross_exposure_and_open_positions_count_each_book_unsigned(tmp_path: Path) -> None:
    store, session = _session(tmp_path)
    champ, challenger = _opposite_books()  # 10,000 of equity: 10,000 gross in BTC, though the books net to flat
    whole = whole_snapshot([portfolio_snapshot(champ, PRICES), portfolio_snapshot(challenger, PRICES)])
    assert whole.positions[BTC] == pytest.approx(0.0) and whole.gross == {BTC: pytest.approx(0.2)}
    flat = Portfolio(cash=1_000.0)  # a third book, flat, enters ETH: within its own limits
    for config, rule in ((RiskConfig(max_gross_exposure=0.9), "max_gross_exposure"),
                         (RiskConfig(max_open_positions=1), "max_open_positions")):  # fmt: skip
        books = [*_books(config, (champ, []), (challenger, [])),
                 SliceIntents(name="other", intents=[_entry(ETH, 500.0)], snapshot=portfolio_snapshot(flat, PRICES),
                              state=RiskState(slice_risk_config(config, 0.1)))]  # fmt: skip
        with store.transaction() as db:
            assert pre_trade_slices(db, session=session, books=books, state=RiskState(config), ts=0, markets={}) == []
        assert _denials(store, session.id)[-1] == ("other", "session", rule)
    store.close()


def test_a_slice_throttle_counts_only_what_the_session_approved(tmp_path: Path) -> None:
    store, session = _session(tmp_path)
    config = RiskConfig(max_open_positions=2, max_orders=10)
    challenger = Portfolio(cash=1_000.0)
    challenger.apply_fill(FillRecord(instrument=SOL, side=OrderSide.BUY, quantity=5.0, price=100.0, fee=0.0, ts=0))
    books = _books(config, (Portfolio(cash=8_000.0), [_entry(BTC, 500.0), _entry(ETH, 500.0)]), (challenger, []))
    with store.transaction() as db:
        approved = pre_trade_slices(db, session=session, books=books, state=RiskState(config), ts=0, markets={})
    assert len(approved) == 1  # the champion's book may hold both; the session, with SOL, only one more
    assert _denials(store, session.id) == [(CHAMPION, "session", "max_open_positions")]
    assert books[0].state.orders_in_window(0) == 1
    store.close()
