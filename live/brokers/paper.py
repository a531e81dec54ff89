"""Paper broker: fills with the backtest's rules (``tradeloop.backtest.kernel``).

A market order sent after bar ``t`` closes fills at the open of the symbol's next candle;
within a bar every sell fills before any buy, so cash freed by an exit funds an entry, and
each side fills in symbol order (the kernel's column order), whatever order they came in.
Buys fill at ``open * (1 + slippage)`` and spend ``min(quote_amount, cash / (1 + fee))``;
sells at ``open * (1 - slippage)``; the fee is ``fee_rate * notional``. The parity test
holds this module to the compiled kernel, order by order.
"""

from __future__ import annotations

from live.brokers.base import FillReport, OrderRequest, OrderState
from live.feeds.base import CandleBatch


class PaperBroker:
    venue = "paper"

    def __init__(self, *, fee_rate: float, slippage: float = 0.0):
        self.fee_rate, self.slippage = fee_rate, slippage
        self.pending: dict[str, OrderRequest] = {}

    async def submit(self, order: OrderRequest) -> OrderState:
        self.pending[order.client_order_id] = order
        return OrderState(order.client_order_id, "acknowledged", venue_order_id=f"paper-{order.client_order_id}")

    async def recover(self, order: OrderRequest, *, sent: bool, since_ms: int) -> OrderState:
        return await self.submit(order)  # the paper book lives in memory: rebuild it from the database

    async def query(self, client_order_id: str, symbol: str) -> OrderState:
        return OrderState(client_order_id, "acknowledged" if client_order_id in self.pending else "unknown")

    async def cancel(self, order: OrderRequest) -> OrderState:
        """An order still in the book is canceled at once; one that is not is already over."""
        if self.pending.pop(order.client_order_id, None) is not None:
            return OrderState(order.client_order_id, "canceled", reason="canceled before its fill")
        return OrderState(order.client_order_id, "unknown", reason="not in the paper book")

    async def on_bar(self, batch: CandleBatch, *, cash: float) -> list[OrderState]:
        if not self.pending:
            return []
        opens = dict(zip(batch.candles["symbol"].to_list(), batch.candles["open"].to_list(), strict=True))
        fee, slip = self.fee_rate, self.slippage
        ready = [o for o in self.pending.values() if o.symbol in opens]
        done = []
        for order in sorted(ready, key=lambda o: (o.side != "sell", o.symbol)):  # the kernel's order
            del self.pending[order.client_order_id]
            o = opens[order.symbol]
            if order.side == "sell":
                px = o * (1.0 - slip)
                qty = order.quantity or 0.0  # exits always carry their quantity
                cash += qty * px * (1.0 - fee)
            else:
                px = o * (1.0 + slip)
                wanted = order.quote_amount / px if order.quote_amount is not None else (order.quantity or 0.0)
                qty = min(wanted, cash / (px * (1.0 + fee)))
                if not qty > 0.0:  # nothing to spend: the order lapses, as in the backtest
                    done.append(OrderState(order.client_order_id, "rejected", reason="no cash at the fill"))
                    continue
                cash -= qty * px + qty * px * fee
            fill = FillReport(
                order.client_order_id,
                order.symbol,
                order.side,
                f"paper-{order.client_order_id}",
                qty,
                px,
                qty * px * fee,
                batch.ts,
            )
            done.append(OrderState(order.client_order_id, "filled", fills=(fill,)))
        return done

    def is_dust(self, symbol: str, quantity: float) -> bool:
        return quantity <= 0.0  # the backtest trades any amount

    async def close(self) -> None:
        return None
