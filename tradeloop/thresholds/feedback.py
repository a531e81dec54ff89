"""Feedback from realised outcomes into the threshold in force: the one definition the live
engine's adaptation step (``live.adaptation``) and a replay of a session's history both call,
so a replay of a live period gives the same thresholds at the same bars.

Rules:

1. A trade is a round trip of one symbol: it opens with the first fill from flat and closes
   with the fill that brings the position back to flat (a fill that crosses zero closes the
   trade with its closing part and opens the next one with the rest). Its net return is its
   cash flow (proceeds less costs, fees included) over the notional of the fills that built
   the position. Its probability is the one the model gave the entry order that opened it; a
   trade opened by an order without one (no model decided it) teaches nothing.
2. Closed labels only: a trade counts once closed, at the first bar whose open time is at or
   after its closing fill's ``ts`` and after the bar the session had committed when that fill
   was stored (``after_bar_ts``: a fill the venue reported late, reconciled at a restart,
   teaches from the next bar the engine runs, in the live engine and in a replay alike). An
   open trade never counts.
3. At a bar, its closed trades go through ``OnlineThreshold.observe`` in a fixed order
   (closing ts, symbol, closing fill id). The guardrails are ``OnlineThreshold``'s: the
   threshold stays within ``bounds``, one outcome moves it by at most ``max_step``, nothing
   moves before ``min_samples`` (discounted) outcomes. Every bar with outcomes yields an
   :class:`Adjustment` (the inputs: outcomes, samples, hit rate, old and new, step).
4. A bar's controls apply before its outcomes: ``start`` (a new learner from a threshold: the
   model's own, when a champion first decides, another one is promoted or an operator
   reverts), ``hold`` (frozen by an operator, or an override decides: outcomes are not
   learned from, the threshold stays) and ``release``.
5. Nothing reads the wall clock: times are bars' open times and fills' ``ts``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from tradeloop.errors import ConfigError
from tradeloop.thresholds.online import OnlineConfig, OnlineThreshold

FLAT_TOLERANCE = 1e-9  # relative to the position's largest size: below it the position is flat
MOVE_TOLERANCE = 1e-12  # a threshold that moved by less did not move

ControlAction = Literal["start", "hold", "release"]


@dataclass(frozen=True, kw_only=True, slots=True)
class TradeFill:
    """One stored fill (``tradeloop.ops.models.Fill``'s fields the feedback reads)."""

    id: int
    order_id: int
    symbol: str
    side: str  # buy | sell
    quantity: float
    price: float
    fee: float
    ts: int
    after_bar_ts: int | None = None  # the session's last committed bar when it was stored (rule 2)


@dataclass(frozen=True, kw_only=True, slots=True)
class ClosedTrade:
    """A closed round trip: what the model said at its entry and what it earned."""

    symbol: str
    entry_order_id: int
    probability: float
    net_return: float
    closed_ts: int  # the closing fill's ts
    closing_fill_id: int
    after_bar_ts: int | None = None  # the closing fill's (rule 2): it counts at a later bar only

    def counts_at(self, bar_ts: int) -> bool:
        """Whether it has counted by the bar opening at ``bar_ts`` (rule 2)."""
        return self.closed_ts <= bar_ts and (self.after_bar_ts is None or bar_ts > self.after_bar_ts)

    def detail(self) -> dict[str, float | int | str]:
        return {
            "symbol": self.symbol,
            "entry_order_id": self.entry_order_id,
            "probability": self.probability,
            "net_return": self.net_return,
            "closed_ts": self.closed_ts,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class Control:
    """An event that changes the learner at a bar (rule 4)."""

    bar_ts: int
    action: ControlAction
    threshold: float | None = None  # start: where the new learner starts


@dataclass(frozen=True, kw_only=True, slots=True)
class Adjustment:
    """What a bar's closed outcomes did to the threshold, with its inputs (rule 3)."""

    bar_ts: int
    old: float
    new: float
    outcomes: tuple[ClosedTrade, ...]
    samples: float  # discounted outcomes the new threshold would have taken
    hit_rate: float  # their posterior win rate
    observed: int  # outcomes learned from since the learner started

    @property
    def step(self) -> float:
        return self.new - self.old

    @property
    def moved(self) -> bool:
        return abs(self.new - self.old) > MOVE_TOLERANCE

    def detail(self) -> dict:
        return {
            "bar_ts": self.bar_ts,
            "old": self.old,
            "new": self.new,
            "step": self.step,
            "samples": self.samples,
            "hit_rate": self.hit_rate,
            "observed": self.observed,
            "outcomes": [t.detail() for t in self.outcomes],
        }


@dataclass(kw_only=True, slots=True)
class _Open:
    quantity: float = 0.0
    cash: float = 0.0
    notional: float = 0.0
    peak: float = 0.0
    entry_order_id: int = 0
    probability: float | None = None


@dataclass(kw_only=True, slots=True)
class TradeBook:
    """Round trips built fill by fill (rule 1); ``add`` returns the trades a fill closed."""

    probability_of: Callable[[int], float | None]
    open: dict[str, _Open] = field(default_factory=dict)

    def add(self, fill: TradeFill) -> list[ClosedTrade]:
        sign = 1.0 if fill.side == "buy" else -1.0
        if fill.side not in ("buy", "sell") or not fill.quantity > 0:
            raise ConfigError(f"fill {fill.id}: side {fill.side!r}, quantity {fill.quantity}: not a fill")
        book = self.open.setdefault(fill.symbol, _Open())
        closed: list[ClosedTrade] = []
        left = fill.quantity
        fee_per_unit = fill.fee / fill.quantity
        if book.quantity * sign < 0:  # reduces (or crosses) the open position
            part = min(left, abs(book.quantity))
            book.cash += -sign * part * fill.price - fee_per_unit * part
            book.quantity += sign * part
            left -= part
            if abs(book.quantity) <= FLAT_TOLERANCE * max(book.peak, 1e-300):
                if book.probability is not None and book.notional > 0:
                    closed.append(
                        ClosedTrade(
                            symbol=fill.symbol, entry_order_id=book.entry_order_id, probability=book.probability,
                            net_return=book.cash / book.notional, closed_ts=fill.ts, closing_fill_id=fill.id,
                            after_bar_ts=fill.after_bar_ts,
                        )
                    )  # fmt: skip
                book = self.open[fill.symbol] = _Open()
            if left <= FLAT_TOLERANCE * fill.quantity:
                return closed
        if book.quantity == 0.0:  # opens a trade
            book.entry_order_id, book.probability = fill.order_id, self.probability_of(fill.order_id)
        book.cash += -sign * left * fill.price - fee_per_unit * left
        book.notional += left * fill.price
        book.quantity += sign * left
        book.peak = max(book.peak, abs(book.quantity))
        return closed


def closed_trades(fills: Iterable[TradeFill], probabilities: Mapping[int, float]) -> list[ClosedTrade]:
    """The closed round trips of ``fills`` (in id order), with their entries' ``probabilities``
    (order id -> the model's probability at the entry's decision)."""
    book = TradeBook(probability_of=probabilities.get)
    return [t for f in sorted(fills, key=lambda f: f.id) for t in book.add(f)]


def _order(trade: ClosedTrade) -> tuple[int, str, int]:
    return trade.closed_ts, trade.symbol, trade.closing_fill_id


class FeedbackLoop:
    """The learner of one session: controls and closed outcomes in, adjustments out (rules 3-4)."""

    def __init__(self, *, config: OnlineConfig) -> None:
        self.config = config
        self.learner: OnlineThreshold | None = None
        self.held = False

    @property
    def threshold(self) -> float | None:
        """The adapted threshold (None: no learner started)."""
        return None if self.learner is None else self.learner.threshold

    def control(self, control: Control) -> None:
        if control.action == "start":
            if control.threshold is None or not math.isfinite(control.threshold):
                raise ConfigError(f"start at bar {control.bar_ts} needs a finite threshold, got {control.threshold}")
            lo, hi = self.config.bounds
            self.learner = OnlineThreshold(float(np.clip(control.threshold, lo, hi)), config=self.config)
        else:
            self.held = control.action == "hold"

    def step(self, bar_ts: int, trades: Sequence[ClosedTrade]) -> Adjustment | None:
        """Learn from the outcomes counted at ``bar_ts``; None when none is learned from."""
        if self.learner is None or self.held or not trades:
            return None
        old = self.learner.threshold
        ordered = tuple(sorted(trades, key=_order))
        for trade in ordered:
            self.learner.observe(trade.probability, trade.net_return, closed=True)
        new = self.learner.threshold
        at = int(np.argmin(np.abs(self.learner.candidates - new)))
        return Adjustment(
            bar_ts=bar_ts, old=old, new=new, outcomes=ordered,
            samples=float(self.learner.wins[at] + self.learner.losses[at]),
            hit_rate=float(self.learner.win_rate()[at]), observed=self.learner.updates,
        )  # fmt: skip


def due(pending: list[ClosedTrade], bar_ts: int) -> list[ClosedTrade]:
    """Take from ``pending`` the trades that count at ``bar_ts`` (rule 2); the rest stay."""
    now = [t for t in pending if t.counts_at(bar_ts)]
    pending[:] = [t for t in pending if not t.counts_at(bar_ts)]
    return now


def replay(
    loop: FeedbackLoop, pending: list[ClosedTrade], *, bars: Iterable[int], controls: Iterable[Control]
) -> list[Adjustment]:
    """Run ``loop`` over ``bars`` (open times, ascending): each bar's ``controls``, then the
    ``pending`` trades that count there (taken from it). What the live engine does bar by bar."""
    by_bar: dict[int, list[Control]] = {}
    for c in controls:
        by_bar.setdefault(c.bar_ts, []).append(c)
    out = []
    for bar_ts in bars:
        for c in by_bar.get(bar_ts, ()):
            loop.control(c)
        adjustment = loop.step(bar_ts, due(pending, bar_ts))
        if adjustment is not None:
            out.append(adjustment)
    return out


def replay_thresholds(
    trades: Iterable[ClosedTrade], *, bars: Iterable[int], controls: Iterable[Control], config: OnlineConfig
) -> list[Adjustment]:
    """The adjustments a session's adaptation makes over ``bars`` (open times, ascending), from
    its closed ``trades`` and the ``controls`` at their bars: what the live engine records."""
    return replay(FeedbackLoop(config=config), sorted(trades, key=_order), bars=bars, controls=controls)
