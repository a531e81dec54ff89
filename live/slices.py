"""Capital slices: challengers that trade a real share of a paper session's capital beside its
champion (``tradeloop.challengers.slices`` holds the shares and how limits scale).

**Books.** The champion's book is the session's own (``sessions.cash``, ``positions``); a
challenger's slice is its funding (``challengers.slice_cash`` at ``slice_ts``) plus the fills of
its orders (``orders.capital_slice`` = its artifact, client ids ``live.orders.slice_prefix``).
Every order is tagged when it is stored, before it is sent, so a restart rebuilds each slice's
cash and positions from the database (:meth:`SliceStage.reload`, before the open orders are
reconciled into the slice's paper book). The session's equity (the ``equity`` table, the kill
switch, the whole-session limits) is the sum of the books; ``sessions.cash`` is the champion's.

Per bar (``LiveEngine.on_batch``):

1. **Before the bar's transaction** (:meth:`SliceStage.run`): which slices there are (every
   ``sync_every_bars`` bars); each slice's paper book (``live.brokers.paper`` rule 5) fills its
   orders at this bar with the slice's cash.
2. **Settle** (:meth:`settle`, before the mark): those fills stored (``live.orders.apply_state``)
   and applied to the slice's portfolio, marked at the closes.
3. **Evidence** (:meth:`evidence`, after the mark; written by :meth:`persist`): one paired bar
   per open slice, on a bar where the champion decided: the champion's book's return and the
   slice's, both real money (``tradeloop.challengers.evidence`` rule 2); the shadow does not
   simulate these challengers (``live.shadow``), it judges their evidence.
4. **Funding and closing** (:meth:`transfer`, before anyone decides):
   - a challenger named with share ``s`` gets ``s`` of the session's equity at this close, in
     cash moved out of the champion's book, at the first bar where the champion's cash covers
     it (the champion is never made to sell); audited ``slice_funded``.
   - a slice whose challenger is retired or promoted is ``closing`` (audited ``slice_closing``):
     no more entries, reduce-only orders flatten its positions; once it is flat with no open
     order its cash returns to the champion's book (audited ``slice_closed``): the champion
     trades the whole capital again (a promoted challenger is the champion by then,
     ``live.models``). A kill switch's ``flatten_on_kill`` flattens every slice too.
5. **Decide** (:meth:`decide`): each open slice decides at the close with its own model
   (``live.shadow.model_signals``, the in-sample rule included) and sizes entries from its own
   equity (``live.entries.EntryPlanner``). A challenger that raises is retired (rule 4 closes it).
6. **Risk** (:meth:`pre_trade`, ``live.slice_risk``): each book against its own limits, then
   all together against the session's.
7. **Persist** (:meth:`persist`): the slices' approved intents as tagged order rows (audited
   ``order_decided`` with ``slice``) in the bar's transaction; the engine sends them with the
   champion's through the session's broker, which hands each to its slice's book.

Paper sessions only (``ChallengerStore.add`` refuses a share for a live one; a live engine runs
such a challenger in shadow). A slice's throttle memory is in memory; the session's is stored.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from live.brokers.base import OrderState
from live.brokers.paper import PaperBroker
from live.entries import EntryPlanner
from live.feeds.base import CandleBatch
from live.orders import apply_state, new_order, slice_prefix
from live.risk_stage import portfolio_snapshot
from live.shadow import ShadowStage, model_signals
from live.slice_risk import CHAMPION, SliceIntents, pre_trade_slices
from live.venues import instrument_of, key_of, sent_to
from tradeloop.backtest import BacktestConfig
from tradeloop.challengers.evidence import ChallengerStore, PairedBar
from tradeloop.challengers.slices import champion_share, slice_risk_config
from tradeloop.ops import Fill, OpsStore, Order, TradingSession
from tradeloop.ops.challenger_models import ChallengerRow
from tradeloop.ops.store import OPEN_STATUSES
from tradeloop.portfolio import CashFlowKind, Portfolio
from tradeloop.risk import MarketRules, PortfolioSnapshot, RiskConfig, RiskState
from tradeloop.risk.checks import flatten_intents
from tradeloop.thresholds import ThresholdModel
from tradeloop.trading import FillRecord, InstrumentId, OrderIntent, OrderSide

log = logging.getLogger(__name__)

__all__ = ["Slice", "SliceStage"]

ACTIVE = ("shadow", "recommended")  # a challenger whose slice trades; any other status closes it


@dataclass(kw_only=True, eq=False)
class Slice:
    """One challenger's capital slice (module rules); ``state``: waiting (not funded), open, closing."""

    row_id: int
    artifact: str
    share: float
    prefix: str
    model: ThresholdModel | None  # None: closing without a model (it only flattens)
    broker: PaperBroker
    planner: EntryPlanner
    risk: RiskState
    state: str = "waiting"
    portfolio: Portfolio = field(default_factory=lambda: Portfolio(cash=0.0))
    since: int | None = None  # the bar it was funded at
    equity: float = 0.0  # at the last close
    before: float = 0.0  # at the close before it (the evidence's base)
    ended: list[OrderState] = field(default_factory=list)
    intents: list[OrderIntent] = field(default_factory=list)
    retiring: bool = False

    @property
    def funded(self) -> bool:
        return self.state in ("open", "closing")

    def positions(self) -> dict[str, float]:
        return {p.instrument.symbol: p.quantity for p in self.portfolio.positions()}


class SliceStage:
    """The capital slices of one session (module rules); constructed cheaply, reads at :meth:`reload`
    or the first bar."""

    def __init__(
        self,
        *,
        store: OpsStore,
        session: TradingSession,
        broker: object,
        backtest: BacktestConfig,
        risk_config: RiskConfig,
        shadow: ShadowStage,
        sync_every_bars: int = 10,
    ):
        self.store, self.session, self.backtest, self.risk_config = store, session, backtest, risk_config
        self.broker = broker if isinstance(broker, PaperBroker) else None  # paper sessions only
        self.shadow, self.sync_every_bars = shadow, sync_every_bars
        self.slices: dict[str, Slice] = {}
        self._champion_risk: tuple[float, RiskState] | None = None
        self._approved: list[tuple[Slice, OrderIntent]] = []
        self._evidence: list[tuple[Slice, PairedBar]] = []
        self._champion_before: float | None = None
        self._bar_ts: int | None = None
        self._last: Mapping[str, float] = {}  # the closes the slices were marked at
        self._bars = 0
        self._loaded = False

    # ------------------------------------------------------------------ reads
    @property
    def active(self) -> bool:
        """True while a slice is funded: the risk stage is this module's."""
        return any(s.funded for s in self.slices.values())

    @property
    def equity(self) -> float:
        """The funded slices' equity at the last mark (the champion's book not included)."""
        return sum(s.portfolio.equity() for s in self.slices.values() if s.funded)

    @property
    def cash(self) -> float:
        return sum(s.portfolio.cash for s in self.slices.values() if s.funded)

    def _funded(self) -> list[Slice]:
        return [self.slices[a] for a in sorted(self.slices) if self.slices[a].funded]

    # ------------------------------------------------------------------ the slices, from the database
    def reload(self, session: TradingSession) -> None:
        """Every slice as the database has it (``session``: as just read): at a (re)start, before
        the open orders are reconciled (each slice's paper book must exist to take its orders back)."""
        self.session = session
        self.slices.clear()
        self._bar_ts, self._loaded = None, False
        self._sync()

    def _sync(self) -> None:
        if self.broker is None:
            return
        self._loaded = True
        rows = {r.artifact: r for r in ChallengerStore(self.store).slices(self.session.id)}
        for gone in set(self.slices) - set(rows):
            del self.slices[gone]
        for artifact, row in sorted(rows.items()):
            known = self.slices.get(artifact)
            if known is None:
                known = self._make(row)
                if known is None:
                    continue
                self.slices[artifact] = known
            known.retiring = row.status not in ACTIVE or known.model is None
            if known.retiring and known.state == "waiting":  # never funded: nothing to close
                del self.slices[artifact]

    def _make(self, row: ChallengerRow) -> Slice | None:
        assert self.broker is not None and row.capital_share is not None
        model = self.shadow.load_model(row.artifact) if row.status in ACTIVE else None
        if model is None and row.slice_state not in ("open", "closing"):
            return None  # refused (retired by the shadow's checks) or unreadable now: tried at the next sync
        self.shadow.sliced.add(row.artifact)
        prefix = slice_prefix(self.session.id, row.id)
        made = Slice(
            row_id=row.id, artifact=row.artifact, share=row.capital_share, prefix=prefix, model=model,
            broker=self.broker.slice_book(prefix),
            planner=EntryPlanner(self.backtest, venue=self.session.exchange, timeframe=self.session.timeframe),
            risk=RiskState(slice_risk_config(self.risk_config, row.capital_share)),
        )  # fmt: skip
        if row.slice_state in ("open", "closing") and row.slice_cash is not None:
            made.state, made.since = row.slice_state, row.slice_ts
            made.portfolio = self._rebuilt(row)
            made.equity = made.before = self._last_equity(row.artifact, made.portfolio)
        return made

    def _rebuilt(self, row: ChallengerRow) -> Portfolio:
        """The slice's book: its funding plus its orders' fills, in the order they were stored."""
        assert row.slice_cash is not None
        book = Portfolio(cash=row.slice_cash)
        with self.store.transaction() as db:
            fills = db.scalars(
                select(Fill)
                .join(Order, Order.id == Fill.order_id)
                .where(
                    Fill.session_id == self.session.id,
                    Order.capital_slice == row.artifact,
                    Order.decided_ts >= (row.slice_ts or 0),
                )
                .order_by(Fill.id)
            )
            for f in fills:
                book.apply_fill(self._record(f))
        return book

    def _last_equity(self, artifact: str, book: Portfolio) -> float:
        """The slice's equity at the session's last committed close: its evidence's, when that bar
        was paired; else its book at its fills' prices (the next close marks it)."""
        bars = ChallengerStore(self.store).returns(self.session.id, artifact)
        if bars and bars[-1].ts == self.session.last_bar_ts:
            return bars[-1].equity
        return book.equity()

    def _record(self, f: Fill) -> FillRecord:
        return FillRecord(
            instrument=instrument_of(self.session.exchange, f.symbol), side=OrderSide(f.side), quantity=f.quantity,
            price=f.price, fee=f.fee, ts=f.ts, trade_id=f.trade_id,
        )  # fmt: skip

    # ------------------------------------------------------------------ the bar
    async def run(self, batch: CandleBatch, *, equity: float) -> None:
        """Rule 1; ``equity``: the champion's book at the last close."""
        if self.broker is None or self._bar_ts == batch.ts:
            return  # the bar again: its fills are waiting already
        if not self._loaded or self._bars % self.sync_every_bars == 0:
            self._sync()
        self._bars += 1
        self._bar_ts, self._champion_before = batch.ts, equity
        for s in self._funded():
            s.before = s.equity
            s.ended = await s.broker.on_bar(batch, cash=s.portfolio.cash)

    def settle(self, db: Session, *, last: Mapping[str, float]) -> None:
        """Rule 2."""
        self._last = last
        for s in self._funded():
            for state in s.ended:
                for fill in apply_state(db, state, session_id=self.session.id):
                    s.portfolio.apply_fill(self._record(fill))
            s.ended = []
            s.portfolio.mark({instrument_of(self.session.exchange, k): last.get(k) for k in s.positions()})
            s.equity = s.portfolio.equity()

    def evidence(self, ts: int, *, equity: float, champion: str | None, decided: bool) -> None:
        """Rule 3: the bar's paired returns (written by :meth:`persist` with the orders decided)."""
        before = self._champion_before
        if not decided or before is None:
            return
        self._evidence = [
            (s, PairedBar(artifact=s.artifact, ts=ts, champion=_ret(equity, before),
                          challenger=_ret(s.equity, s.before), equity=s.equity, orders=0, champion_artifact=champion))
            for s in self._funded()
            if s.state == "open" and s.since is not None and s.since < ts
        ]  # fmt: skip

    def transfer(self, db: Session, ts: int, *, champion: Portfolio) -> float:
        """Rule 4; the champion's equity after it."""
        for s in [self.slices[a] for a in sorted(self.slices)]:
            if s.state == "waiting":
                amount = s.share * (champion.equity() + self.equity)
                if not (amount > 0 and champion.cash >= amount):
                    continue
                champion.add_cash_flow(-amount, reason=CashFlowKind.TRANSFER)
                s.portfolio, s.state, s.since, s.equity, s.before = Portfolio(cash=amount), "open", ts, amount, amount
                self._row(db, s, slice_cash=amount, slice_ts=ts, slice_state="open")
                self._audit(db, "slice_funded", s, ts=ts, cash=amount, share=s.share)
            elif s.retiring and s.state == "open":
                s.state = "closing"
                self._row(db, s, slice_state="closing")
                self._audit(db, "slice_closing", s, ts=ts)
            elif s.state == "closing" and not s.positions() and not self._open_orders(db, s):
                champion.add_cash_flow(s.portfolio.cash, reason=CashFlowKind.TRANSFER)
                self._row(db, s, slice_state="closed")
                self._audit(db, "slice_closed", s, ts=ts, cash=s.portfolio.cash)
                del self.slices[s.artifact]
                self.broker.slices.pop(s.prefix, None)  # type: ignore[union-attr]  # funded: paper
        return champion.equity()

    def decide(self, db: Session, ts: int, *, window: pl.DataFrame, last: Mapping[str, float], flatten: bool) -> None:
        """Rule 5 (and rule 4's flattening orders)."""
        for s in self._funded():
            s.intents = []
            if s.state == "closing" or flatten:
                pending = {o.symbol for o in self._open_orders(db, s) if o.reduce_only and o.parent_id is None}
                snap = self._snapshot(s)
                s.intents = [i for i in flatten_intents(snap) if i.instrument.symbol not in pending]
                continue
            assert s.model is not None  # open: it has one
            try:
                signals = model_signals(s.model, window, ts, in_sample=bool(self.session.in_sample))
                s.intents = s.planner.decide(
                    signals, window=window, positions=s.positions(), equity=s.equity, last=last, broker=s.broker
                )
            except Exception as exc:  # a failing challenger never stops the champion's bar
                log.error("session %s: slice %s failed to decide at %d; retired, its slice closes",
                          self.session.name, s.artifact[:12], ts, exc_info=exc)  # fmt: skip
                self._retire(db, s, {"bar_ts": ts, "error": f"{type(exc).__name__}: {exc}"[:200]})

    def pre_trade(
        self,
        db: Session,
        intents: list[OrderIntent],
        *,
        snapshot: PortfolioSnapshot,
        state: RiskState,
        ts: int,
        markets: Mapping[InstrumentId, MarketRules],
    ) -> list[OrderIntent]:
        """Rule 6: the champion's intents that may be sent; the slices' wait for :meth:`persist`."""
        funded = self._funded()
        books = [SliceIntents(name=CHAMPION, intents=intents, snapshot=snapshot, state=self._champion_state(funded))]
        books += [
            SliceIntents(name=s.artifact, intents=s.intents, snapshot=self._snapshot(s), state=s.risk) for s in funded
        ]
        approved = pre_trade_slices(db, session=self.session, books=books, state=state, ts=ts, markets=markets)
        self._approved = [(self.slices[n], i) for n, i in approved if n != CHAMPION]
        return [i for n, i in approved if n == CHAMPION]

    def persist(self, db: Session, ts: int) -> list[Order]:
        """Rule 7 and rule 3's evidence; the slices' orders, for the engine to send."""
        orders = []
        for s, intent in self._approved:
            order = new_order(
                db, session_id=self.session.id, venue=sent_to(self.broker, intent.instrument), ts=ts, intent=intent,
                symbol=key_of(self.session.exchange, intent.instrument), capital_slice=(s.artifact, s.prefix),
            )  # fmt: skip
            orders.append((s, order))
        db.flush()
        for s, order in orders:
            detail = {"symbol": order.symbol, "side": order.side, "quantity": order.quantity,
                      "quote_amount": order.quote_amount, "slice": s.artifact}  # fmt: skip
            OpsStore.audit(db, "order_decided", session_id=self.session.id, order_id=order.id, detail=detail)
        counts = {s.artifact: sum(1 for t, _ in orders if t is s) for s, _ in self._evidence}
        ChallengerStore.record(db, self.session.id, [replace(b, orders=counts[s.artifact]) for s, b in self._evidence])
        self._approved, self._evidence = [], []
        return [o for _, o in orders]

    # ------------------------------------------------------------------ helpers
    def _champion_state(self, funded: list[Slice]) -> RiskState:
        """The champion's slice limits at its share now (its throttle kept while the share holds)."""
        share = champion_share(s.share for s in funded)
        if self._champion_risk is None or not math.isclose(self._champion_risk[0], share):
            self._champion_risk = (share, RiskState(slice_risk_config(self.risk_config, share)))
        return self._champion_risk[1]

    def _snapshot(self, s: Slice) -> PortfolioSnapshot:
        return portfolio_snapshot(
            s.portfolio, {instrument_of(self.session.exchange, k): px for k, px in self._last.items()}
        )

    def _open_orders(self, db: Session, s: Slice) -> list[Order]:
        return list(
            db.scalars(
                select(Order).where(
                    Order.session_id == self.session.id,
                    Order.capital_slice == s.artifact,
                    Order.status.in_(OPEN_STATUSES),
                )
            )
        )

    def _row(self, db: Session, s: Slice, **values: object) -> None:
        row = db.get(ChallengerRow, s.row_id)
        assert row is not None  # challengers are never deleted
        for k, v in values.items():
            setattr(row, k, v)

    def _audit(self, db: Session, event: str, s: Slice, **detail: object) -> None:
        OpsStore.audit(db, event, session_id=self.session.id, detail={"artifact": s.artifact, **detail})

    def _retire(self, db: Session, s: Slice, detail: dict) -> None:
        """Retired in the bar's transaction (audited), so rule 4 closes its slice."""
        row = db.get(ChallengerRow, s.row_id)
        if row is not None and row.status in ACTIVE:
            row.status = "retired"
            OpsStore.audit(
                db, "challenger_retired", session_id=self.session.id, actor="engine",
                detail={"artifact": s.artifact, **detail},
            )  # fmt: skip
        s.retiring, s.intents = True, []


def _ret(after: float, before: float) -> float:
    return after / before - 1.0 if before > 0 and math.isfinite(before) else 0.0
