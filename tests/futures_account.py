"""The USDⓈ-M loopback's account: one-way positions, margin, liquidation price and funding.

Rules (Binance's published formulas; simplifications named):

* One position per symbol (one-way mode, ``positionSide=BOTH``): a buy adds to a long or
  reduces a short, and past zero it flips; the entry price is the quantity-weighted average
  of the opening fills, unchanged by reducing ones. A reducing fill realizes
  ``closed x (price - entry) x sign`` into the wallet; every fill pays its commission
  (taker 0.05%, maker 0.02%) from it.
* Margin: a position's initial margin is ``|amount| x mark / leverage``. Isolated positions
  hold their own wallet: opening fills move ``qty x price / leverage`` into it, funding goes
  to it, a reducing fill releases its share (simplification: realized PnL goes to the main
  wallet). Available = wallet + cross unrealized PnL - isolated wallets - cross initial margin
  - open orders' initial margin; an opening order needing more is refused (-2019).
* Maintenance: the symbol's leverage bracket for the position's notional gives the rate
  ``mmr`` and amount ``cum``. Liquidation price (Binance's one-way formula):
  ``(WB - TMM1 + UPNL1 + cum - side x Q x EP) / (Q x mmr - side x Q)``, side +1 long -1 short,
  Q = |amount|, EP = entry; isolated: WB = its wallet, TMM1 = UPNL1 = 0; cross: WB = the main
  wallet less isolated wallets, TMM1 and UPNL1 the other cross positions' maintenance and PnL.
* Funding: ``-amount x mark x rate`` for each open position (longs pay a positive rate).
"""

from __future__ import annotations

from dataclasses import dataclass

TAKER, MAKER = 0.0005, 0.0002
DEFAULT_LEVERAGE = 20
# (notional floor, notional cap, maintenance margin rate, cum, max leverage): Binance's schedule,
# written by hand (tests/fixtures/exchange/PROVENANCE.md); cum_n = cum_(n-1) + floor_n x (mmr_n - mmr_(n-1))
BRACKETS: dict[str, list[tuple[float, float, float, float, int]]] = {
    "BTCUSDT": [
        (0, 50_000, 0.004, 0, 125),
        (50_000, 250_000, 0.005, 50, 100),
        (250_000, 1_000_000, 0.01, 1_300, 50),
        (1_000_000, 10_000_000, 0.025, 16_300, 20),
        (10_000_000, 20_000_000, 0.05, 266_300, 10),
    ],
    "ETHUSDT": [
        (0, 10_000, 0.005, 0, 100),
        (10_000, 100_000, 0.0065, 15, 75),
        (100_000, 500_000, 0.01, 365, 50),
        (500_000, 1_000_000, 0.02, 5_365, 25),
        (1_000_000, 2_000_000, 0.05, 35_365, 10),
    ],
}


@dataclass
class Position:
    amount: float = 0.0  # signed: short < 0
    entry: float = 0.0
    isolated_wallet: float = 0.0
    updated: int = 0


def bracket(symbol: str, notional: float) -> tuple[float, float]:
    """(maintenance margin rate, maintenance amount) for a position of ``notional`` (abs)."""
    rows = BRACKETS[symbol]
    row = next((r for r in rows if r[0] <= notional < r[1]), rows[-1])
    return row[2], row[3]


def max_leverage(symbol: str) -> int:
    return BRACKETS[symbol][0][4]


def apply_fill(pos: Position, side: str, qty: float, price: float, *, leverage: int, isolated: bool) -> float:
    """Move ``pos`` by a fill; returns the PnL it realized."""
    signed = qty if side == "BUY" else -qty
    if pos.amount == 0.0 or (pos.amount > 0) == (signed > 0):  # opens or adds
        total = abs(pos.amount) + qty
        pos.entry = (abs(pos.amount) * pos.entry + qty * price) / total
        pos.amount += signed
        if isolated:
            pos.isolated_wallet += qty * price / leverage
        return 0.0
    closed = min(qty, abs(pos.amount))
    realized = closed * (price - pos.entry) * (1.0 if pos.amount > 0 else -1.0)
    if isolated:
        pos.isolated_wallet -= pos.isolated_wallet * closed / abs(pos.amount)
    pos.amount = round(pos.amount + signed, 12)
    if pos.amount == 0.0:
        pos.entry, pos.isolated_wallet = 0.0, 0.0
    elif (pos.amount > 0) == (signed > 0):  # flipped: the rest opens at this price
        pos.entry = price
        if isolated:
            pos.isolated_wallet = abs(pos.amount) * price / leverage
    return realized


def unrealized(pos: Position, mark: float) -> float:
    return pos.amount * (mark - pos.entry)


def liquidation_price(
    symbol: str,
    pos: Position,
    *,
    mark: float,
    isolated: bool,
    cross_wallet: float,
    others: list[tuple[str, Position, float]],
) -> float:
    """Binance's one-way liquidation price (0 when there is none). ``others``: the other cross
    positions as (symbol, position, mark)."""
    if pos.amount == 0.0:
        return 0.0
    q, side = abs(pos.amount), 1.0 if pos.amount > 0 else -1.0
    mmr, cum = bracket(symbol, q * mark)
    if isolated:
        wb, tmm, upnl = pos.isolated_wallet, 0.0, 0.0
    else:
        wb = cross_wallet
        tmm = sum(
            abs(p.amount) * m * bracket(s, abs(p.amount) * m)[0] - bracket(s, abs(p.amount) * m)[1]
            for s, p, m in others
        )
        upnl = sum(unrealized(p, m) for _, p, m in others)
    price = (wb - tmm + upnl + cum - side * q * pos.entry) / (q * mmr - side * q)
    return max(price, 0.0)
