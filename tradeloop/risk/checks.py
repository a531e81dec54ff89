"""The pre-trade check: every order intent is approved or denied before it is stored.

An intent **reduces** when ``intent.kind.reduces`` or ``intent.reduce_only``; every other
intent is an **entry**. Notation for an intent on instrument ``i`` at bar ``ts``:
``pos`` the snapshot's signed quantity in ``i``, ``last`` its last trade price (may be
missing for an instrument not held), the order price ``p_o`` = the limit price, else the
reference price; the valuation price ``p_v`` = ``p_o``, else ``last``; the order's notional
``N`` = the quote amount for a ``quote_amount`` intent, else the (rounded) quantity times
``p_v``; ``s`` = +1 for a buy, -1 for a sell; ``n_j = pos_j * last_j`` each held
instrument's signed notional; ``E`` the snapshot's equity.

Rules, in this fixed order; the first that fails is the verdict (``RiskDenied.rule``):

0. ``bypass`` (tests only): approve the intent unchanged.
1. ``INVALID`` (all): a quantity or quote amount, or a given price (limit, trigger,
   reference), that is not a finite number > 0.
2. ``NOT_REDUCING`` (reductions): ``pos`` is flat, or the side would grow it, or the amount
   exceeds ``|pos|`` (a quote amount is converted at ``p_v``; ``NO_PRICE`` when there is
   none). A reduction that passes this only lowers risk, so rules 3-6 and 8-13 never deny
   it: a stop-loss on a gap is not a fat finger, and the venue has the last word on its
   notional.
3. ``KILL_SWITCH`` (entries): the state's switch is tripped (``RiskState.tripped``).
4. ``THROTTLE`` (entries): ``max_orders`` orders are already counted in
   ``(ts - throttle_window_ms, ts]`` (recorded ones plus those approved earlier in the same
   batch; reductions count too, they are orders). ``value`` is the number this order would
   have in the window (``count + 1``).
5. ``NO_PRICE`` (entries): no ``p_v`` (no limit, no reference and no last price).
6. ``PRICE_BAND`` (entries, when ``p_o`` and ``last`` are known):
   ``|p_o / last - 1| > price_band``.
7. ``MIN_AMOUNT`` (all, with ``check_market_rules`` and market rules): the quantity
   rounded down to the amount step (a quote amount: ``N / p_v``, not rounded) is zero or
   below ``min_amount``. A venue refuses such an order whatever it is for.
8. ``MIN_NOTIONAL`` (entries, same conditions): ``N < min_notional``.
9. ``MAX_ORDER_NOTIONAL`` (entries): ``N > max_order_notional``.
10. ``MAX_POSITION_NOTIONAL`` (entries): ``|n_i + s*N| > max_position_notional``.
11. ``MAX_OPEN_POSITIONS`` (entries that open: ``pos`` flat): held instruments + 1
    ``> max_open_positions``.
12. ``MAX_GROSS_EXPOSURE`` (entries): ``(sum_{j != i} |n_j| + |n_i + s*N|) / E >
    max_gross_exposure`` (any entry is denied while ``E <= 0``).
13. ``MAX_NET_EXPOSURE`` (entries): ``|sum_j n_j + s*N| / E > max_net_exposure``.

A snapshot netting several books of one session (``PortfolioSnapshot.gross``, ``live.slice_risk``)
counts rules 11 and 12 unsigned: an instrument any book holds is open, and its ``|n_j|`` is its
gross over the books (``g_j * last_j``; the entry's instrument after it: ``g_i * last_i + N``,
an entry grows its own book's position); rules 10 and 13 stay net (the session's position).

Only the rule's own arithmetic is done; nothing is clipped to fit (a denied entry is not
resized). Caps allow their exact value, minimums too (``tradeloop.risk.records`` holds the
tolerance). An approved intent comes back with its quantity rounded down to the amount step,
a limit price rounded to the tick in the trader's favour (buy down, sell up) and a trigger
price to the nearest tick (``tradeloop.risk.market``), when market rules apply.

A bar's intents (:func:`check_batch`) are judged in a fixed order: reductions before
entries (as fills happen: exits free room for entries), each group by instrument, then as
given. Each approved intent moves a running snapshot that later intents are judged against:
its position by the (rounded) quantity, a quote amount converted at ``p_v``, and cash by
that quantity times ``p_v``; equity does not move, and later intents mark the position at
``last`` like any other (``p_v`` becomes ``last`` only for an instrument that had none).
Each approved intent also counts toward the throttle. Results come back in the order the
intents were given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from tradeloop.risk import limits
from tradeloop.risk.config import RiskConfig
from tradeloop.risk.limits import APPROVED, FLAT_QTY
from tradeloop.risk.market import MarketRules
from tradeloop.risk.records import (
    Holdings,
    PortfolioSnapshot,
    RiskApproved,
    RiskDenied,
    RiskResult,
    RiskRule,
)
from tradeloop.risk.state import RiskState
from tradeloop.trading import InstrumentId, OrderIntent, OrderIntentKind, OrderSide, OrderType

R = RiskRule


def is_reducing(intent: OrderIntent) -> bool:
    """True for an intent that may only shrink a position (its kind reduces, or reduce-only)."""
    return intent.kind.reduces or intent.reduce_only


def _positive(x: float | None) -> bool:
    return x is None or (math.isfinite(x) and x > 0)


def check_intent(
    intent: OrderIntent,
    snapshot: Holdings,
    *,
    state: RiskState,
    ts: int,
    market: MarketRules | None = None,
    pending_orders: int = 0,
) -> RiskResult:
    """Judge one intent decided at bar ``ts`` (the module's rules 0-13); never raises for a denial.

    Parameters
    ----------
    intent
        What the decision asks for.
    snapshot
        The portfolio at the bar's close: a ``PortfolioSnapshot`` or anything with its four
        fields (equity, cash, positions, prices).
    state
        The session's risk state: its config, kill switch and throttle memory (read only).
    ts
        The decision bar's timestamp (epoch ms).
    market
        The instrument's market rules; ``None``: rules 7-8 are skipped.
    pending_orders
        Orders approved in the same bar and not yet recorded in ``state`` (rule 4).

    Returns
    -------
    RiskApproved | RiskDenied
        Approved with the intent to send (rounded to the market's grid), or denied with the
        first rule that failed, its limit and the value that broke it.
    """
    cfg = state.config
    if cfg.bypass:
        return RiskApproved(intent=intent)
    snapshot = PortfolioSnapshot.of(snapshot)
    inst = intent.instrument

    def deny(rule: RiskRule, message: str, limit: float, value: float) -> RiskDenied:
        return RiskDenied(
            rule=rule, message=f"{inst}: {message}", limit=limit, value=value, instrument=inst, intent=intent, ts=ts
        )

    # 1. invalid
    amount = intent.quantity if intent.quantity is not None else intent.quote_amount
    if not (amount is not None and math.isfinite(amount) and amount > 0) or not all(
        _positive(p) for p in (intent.price, intent.trigger_price, intent.reference_price)
    ):
        return deny(R.INVALID, f"{intent.kind} needs a finite amount and prices > 0", 0.0, float(amount or 0.0))
    reducing = is_reducing(intent)
    pos = snapshot.positions.get(inst, 0.0)
    last = snapshot.prices.get(inst)
    p_o = intent.price if intent.price is not None else intent.reference_price
    p_v = p_o if p_o is not None else last
    if reducing:  # 2. a reduction must reduce
        if intent.quantity is not None:
            qty = intent.quantity
        else:
            qty = intent.quote_amount / p_v if p_v is not None else math.nan  # type: ignore[operator]
        code, limit, value = limits.reduction_rule(pos, float(intent.side.sign), qty)
        if code == limits.NO_PRICE:
            return deny(R.NO_PRICE, f"no price to convert the quote amount {intent.quote_amount:g} at", 0.0, 0.0)
        if code != APPROVED and limit == 0.0:  # flat, or the side would grow it
            return deny(
                R.NOT_REDUCING, f"{intent.side} {intent.kind} would open or grow a position of {pos:g}", limit, value
            )
        if code != APPROVED:
            return deny(R.NOT_REDUCING, f"{intent.kind} of {qty:g} exceeds the position {pos:g}", limit, value)
    else:
        if state.tripped is not None:  # 3. kill switch
            t = state.tripped
            return deny(R.KILL_SWITCH, f"kill switch tripped at bar {t.ts}: {t.message}", t.limit, t.value)
        if cfg.max_orders is not None:  # 4. throttle
            count = state.orders_in_window(ts) + pending_orders
            code, limit, value = limits.throttle_rule(float(count), float(cfg.max_orders))
            if code != APPROVED:
                return deny(
                    R.THROTTLE,
                    f"{count} orders in the last {cfg.throttle_window_ms} ms of bar time (max_orders {cfg.max_orders})",
                    limit,
                    value,
                )
        if p_v is None:  # 5. no price
            return deny(R.NO_PRICE, "no limit, reference or last price to value the order at", 0.0, 0.0)
        code, limit, value = limits.price_band_rule(_nan(p_o), _nan(last), _nan(cfg.price_band))  # 6. price band
        if code != APPROVED:
            return deny(
                R.PRICE_BAND,
                f"price {p_o:g} is {value:.2%} from the last trade {last:g} (price_band {limit:.2%})",
                limit,
                value,
            )
    rules = market if (market is not None and cfg.check_market_rules) else None
    if intent.quantity is not None:
        qty = rules.amount(intent.quantity) if rules is not None else intent.quantity
        notional = qty * p_v if p_v is not None else 0.0
    else:
        notional = intent.quote_amount  # type: ignore[assignment]
        qty = notional / p_v if p_v is not None else 0.0
    if rules is not None:  # 7. min amount, 8. min notional
        code, limit, value = limits.market_rule(
            qty, notional, reducing, _nan(rules.min_amount), _nan(rules.min_notional)
        )
        if code == limits.MIN_AMOUNT:
            return deny(
                R.MIN_AMOUNT,
                f"amount {qty:g} (step {rules.amount_step or 0:g}) is below the market's minimum {limit:g}",
                limit,
                value,
            )
        if code == limits.MIN_NOTIONAL:
            return deny(
                R.MIN_NOTIONAL, f"notional {notional:.2f} is below the market's minimum {limit:g}", limit, value
            )
    if not reducing:
        denial = _exposure(snapshot, inst, intent.side.sign * notional, cfg=cfg, deny=deny)
        if denial is not None:
            return denial
    return RiskApproved(intent=_rounded(intent, qty, rules))


def _exposure(
    snapshot: PortfolioSnapshot,
    inst: InstrumentId,
    signed: float,
    *,
    cfg: RiskConfig,
    deny: Callable[[RiskRule, str, float, float], RiskDenied],
) -> RiskDenied | None:
    """Rules 9-13 for an entry of ``signed`` quote (+ buys, - sells) (``tradeloop.risk.limits.exposure_rule``)."""
    held = {j: snapshot.notional(j) for j, q in snapshot.positions.items() if abs(q) > FLAT_QTY}
    held_i = held.get(inst, 0.0)
    others = sum(abs(n) for j, n in held.items() if j != inst)
    if snapshot.gross is not None:  # several books: gross and counts unsigned, whatever they net to
        px = snapshot.prices.get
        books = {j: g * (px(j) or 0.0) for j, g in snapshot.gross.items() if g > FLAT_QTY}
        held = {**dict.fromkeys(books, 0.0), **held}
        others = sum(g for j, g in books.items() if j != inst) + sum(
            abs(n) for j, n in held.items() if j != inst and j not in books
        )
        # this instrument's gross after the entry, less what the rule adds itself (|held_i + signed|)
        others += books.get(inst, abs(held_i)) + abs(signed) - abs(held_i + signed)
    code, limit, value = limits.exposure_rule(
        signed,
        held_i,
        inst not in held,
        others,
        sum(held.values()),
        float(len(held)),
        snapshot.equity,
        _nan(cfg.max_order_notional),
        _nan(cfg.max_position_notional),
        _nan(cfg.max_open_positions),
        _nan(cfg.max_gross_exposure),
        _nan(cfg.max_net_exposure),
    )
    if code == APPROVED:
        return None
    rule, equity = RiskRule.of(code), snapshot.equity
    if rule is R.MAX_ORDER_NOTIONAL:
        message = f"order notional {value:.2f} exceeds max_order_notional {limit:g}"
    elif rule is R.MAX_POSITION_NOTIONAL:
        message = f"position notional after the order {value:.2f} exceeds max_position_notional {limit:g}"
    elif rule is R.MAX_OPEN_POSITIONS:
        message = f"a new position would make {value:g} open (max_open_positions {limit:g})"
    elif rule is R.MAX_GROSS_EXPOSURE:
        gross = others + abs(held_i + signed)
        message = (
            f"gross exposure after the order {gross:.2f} is {value:.3g}x equity {equity:.2f} "
            f"(max_gross_exposure {limit:g})"
        )
    else:
        net = abs(sum(held.values()) + signed)
        message = (
            f"net exposure after the order {net:.2f} is {value:.3g}x equity {equity:.2f} (max_net_exposure {limit:g})"
        )
    return deny(rule, message, limit, value)


def _nan(x: float | None) -> float:
    """A limit or price for ``tradeloop.risk.limits``: NaN for none."""
    return math.nan if x is None else float(x)


def _rounded(intent: OrderIntent, qty: float, rules: MarketRules | None) -> OrderIntent:
    """The intent on the market's grid: quantity down to the step, limit price in the trader's
    favour, trigger price to the nearest tick."""
    if rules is None:
        return intent
    changes: dict[str, float] = {}
    if intent.quantity is not None and qty != intent.quantity:
        changes["quantity"] = qty
    if intent.price is not None and intent.order_type == OrderType.LIMIT:
        price = rules.price(intent.price, mode="down" if intent.side is OrderSide.BUY else "up")
        if price != intent.price:
            changes["price"] = price
    if intent.trigger_price is not None:
        trigger = rules.price(intent.trigger_price, mode="nearest")
        if trigger != intent.trigger_price:
            changes["trigger_price"] = trigger
    return replace(intent, **changes) if changes else intent  # type: ignore[arg-type]


def check_batch(
    intents: Sequence[OrderIntent],
    snapshot: Holdings,
    *,
    state: RiskState,
    ts: int,
    markets: Mapping[InstrumentId, MarketRules] | None = None,
    record: bool = True,
) -> list[RiskResult]:
    """Judge one bar's intents together (see the module docstring for the order).

    Parameters
    ----------
    intents
        The bar's intents, in any order.
    snapshot
        The portfolio at the bar's close (as for :func:`check_intent`).
    state
        The session's risk state; with ``record``, every approved intent is recorded in its
        throttle memory (``RiskState.record_order(ts)``) in the order judged.
    ts
        The decision bar's timestamp (epoch ms).
    markets
        Market rules per instrument; an instrument without an entry has none.
    record
        ``False`` leaves ``state`` untouched (a dry run).

    Returns
    -------
    list[RiskApproved | RiskDenied]
        One verdict per intent, in the order given.
    """
    markets = markets or {}
    running = PortfolioSnapshot.of(snapshot)
    order = sorted(range(len(intents)), key=lambda k: (not is_reducing(intents[k]), intents[k].instrument, k))
    results: list[RiskResult | None] = [None] * len(intents)
    approved = 0
    for k in order:
        intent = intents[k]
        result = check_intent(
            intent, running, state=state, ts=ts, market=markets.get(intent.instrument), pending_orders=approved
        )
        results[k] = result
        if isinstance(result, RiskApproved):
            approved += 1
            running = _moved(running, result.intent)
    if record:
        for _ in range(approved):
            state.record_order(ts)
    return [r for r in results if r is not None]


def _moved(snapshot: PortfolioSnapshot, intent: OrderIntent) -> PortfolioSnapshot:
    inst = intent.instrument
    price = intent.price if intent.price is not None else intent.reference_price
    if price is None:
        price = snapshot.prices.get(inst)
    if price is None:  # bypass with no price at all: nothing to value it at
        return snapshot
    qty = intent.quantity if intent.quantity is not None else (intent.quote_amount or 0.0) / price
    return snapshot.after(inst, intent.side.sign * qty, price, reduces=is_reducing(intent))


def flatten_intents(snapshot: Holdings) -> list[OrderIntent]:
    """Market ``FLATTEN`` intents closing every open position (for ``flatten_on_kill``), by
    instrument; each is reduce-only, for the whole quantity, at the last price."""
    snapshot = PortfolioSnapshot.of(snapshot)
    return [
        OrderIntent(
            instrument=inst,
            side=OrderSide.SELL if q > 0 else OrderSide.BUY,
            kind=OrderIntentKind.FLATTEN,
            quantity=abs(q),
            reference_price=snapshot.prices[inst],
            reduce_only=True,
        )
        for inst, q in sorted(snapshot.positions.items())
        if abs(q) > FLAT_QTY
    ]
