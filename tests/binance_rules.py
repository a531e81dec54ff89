"""Binance's order rules, shared by the loopback spot and USDⓈ-M venues.

* One price per symbol: the last trade (``prices``). A market order fills at it; a limit
  order is *marketable* when a buy's limit is at or above it (a sell's at or below) and then
  fills at once at it as a taker; otherwise it rests, and a later trade through its limit
  (:meth:`trade` on the servers) fills it at its own limit price as a maker.
* Triggers: a stop buys when the price rises to its trigger and sells when it falls to it; a
  take-profit the other way round. An order whose trigger the current price already meets
  is refused ("Stop price would trigger immediately.", -2010 on spot; -2021 on futures).
* Filters, checked on every new order with Binance's codes and messages: PRICE_FILTER (limit
  and trigger prices: bounds and tick), LOT_SIZE (and MARKET_LOT_SIZE for market orders:
  bounds and step; a zero step or bound is not checked), MIN_NOTIONAL / NOTIONAL (quantity x
  price, the last price for a market order).
* Numbers are compared as ``Decimal`` from the request's strings: a tick or step check on
  floats would refuse valid prices.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from loopback_http import Reject

ZERO = Decimal(0)


def dec(text: str | float | None, *, name: str = "value") -> Decimal:
    try:
        return Decimal(str(text))
    except (InvalidOperation, ValueError) as exc:
        raise Reject(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'.",
        ) from exc


def filters(symbol_info: dict) -> dict[str, dict]:
    return {f["filterType"]: f for f in symbol_info.get("filters", [])}


def marketable(side: str, limit: Decimal, last: Decimal) -> bool:
    return limit >= last if side == "BUY" else limit <= last


def triggered(kind: str, side: str, trigger: Decimal, price: Decimal) -> bool:
    """``kind``: ``stop`` or ``take_profit``; True when ``price`` meets the trigger."""
    rises = (kind == "stop") == (side == "BUY")  # a stop buy and a take-profit sell wait for a rise
    return price >= trigger if rises else price <= trigger


def _steps(value: Decimal, lo: Decimal, step: Decimal) -> bool:
    return step == 0 or (value - lo) % step == 0


def check_price(f: dict[str, dict], price: Decimal, *, futures: bool = False) -> None:
    pf = f.get("PRICE_FILTER")
    if pf is None:
        return
    lo, hi, tick = dec(pf["minPrice"]), dec(pf["maxPrice"]), dec(pf["tickSize"])
    if futures:
        if price < lo:
            raise Reject(-4013, f"Price less than min price. {price} < {lo}")
        if hi and price > hi:
            raise Reject(-4016, "Price is higher than mark price multiplier cap.")
        if not _steps(price, ZERO, tick):
            raise Reject(-4014, "Price not increased by tick size.")
        return
    if price < lo or (hi and price > hi) or not _steps(price, lo, tick):
        raise Reject(-1013, "Filter failure: PRICE_FILTER")


def check_quantity(f: dict[str, dict], qty: Decimal, *, market: bool, futures: bool = False) -> None:
    for name in ("LOT_SIZE", "MARKET_LOT_SIZE") if market else ("LOT_SIZE",):
        lot = f.get(name)
        if lot is None:
            continue
        lo, hi, step = dec(lot["minQty"]), dec(lot["maxQty"]), dec(lot["stepSize"])
        if futures:
            if qty < lo:
                raise Reject(-4004, f"Quantity less than min quantity. {qty} < {lo}")
            if hi and qty > hi:
                raise Reject(-4005, f"Quantity greater than max quantity. {qty} > {hi}")
            if not _steps(qty, ZERO, step):
                raise Reject(-1111, "Precision is over the maximum defined for this asset.")
            continue
        if qty <= 0 or qty < lo or (hi and qty > hi) or not _steps(qty, lo, step):
            raise Reject(-1013, f"Filter failure: {name}")


def check_notional(f: dict[str, dict], notional: Decimal, *, market: bool, futures: bool = False) -> None:
    if futures:
        mn = f.get("MIN_NOTIONAL")
        least = dec(mn["notional"]) if mn else ZERO
        if notional < least:
            raise Reject(-4164, f"Order's notional must be no smaller than {least} (unless you choose reduce only).")
        return
    mn = f.get("MIN_NOTIONAL")
    if mn is not None and (not market or mn.get("applyToMarket", True)) and notional < dec(mn["minNotional"]):
        raise Reject(-1013, "Filter failure: MIN_NOTIONAL")
    nf = f.get("NOTIONAL")
    if nf is not None and (not market or nf.get("applyMinToMarket", True)) and notional < dec(nf["minNotional"]):
        raise Reject(-1013, "Filter failure: NOTIONAL")


def fmt(value: Decimal | float, places: int = 8) -> str:
    return f"{Decimal(str(value)):.{places}f}"
