"""Capital slices: challengers that trade a real share of a session's capital beside its
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
   ``sync_every_bars`` bars: new ones, models read again) and, every bar, their challengers'
   statuses and shares (one small query: a retired or promoted slice takes no entry from the
   next bar on, a re-named waiting one takes its new share); each slice's paper book
   (``live.brokers.paper`` rule 5) fills its orders at this bar with the slice's cash.
2. **Settle** (:meth:`settle`, before the mark): those fills stored (``live.orders.apply_state``)
   and applied to the slice's portfolio, marked at the closes; then each open slice's own loss
   limits on its equity (``live.slice_funding.watch``: a trip retires it, rule 4 closes it).
3. **Evidence** (:meth:`evidence`, after the mark; written by :meth:`persist`): one paired bar
   per open slice, on a bar where the champion decided: the champion's book's return and the
   slice's, both real money (``tradeloop.challengers.evidence`` rule 2); the shadow does not
   simulate these challengers (``live.shadow``), it judges their evidence.
4. **Funding and closing** (:meth:`transfer`, before anyone decides; ``live.slice_funding``):
   a waiting slice is funded with its share of the equity once the champion's cash covers it
   and the funded shares stay within half (until then audited ``slice_waiting`` once, with why);
   a slice whose challenger is retired, promoted or refused is ``closing``: its resting limit
   entries canceled, no more entries, reduce-only orders flatten it; flat with no open order,
   its cash returns to the champion's book: the champion trades the whole capital again (a
   promoted challenger is the champion by then, ``live.models``). A kill switch's
   ``flatten_on_kill`` flattens every slice too. A model that cannot be read now (the registry
   unreadable at a restart) neither closes nor strands an open slice: it holds (no entry;
   exits, legs and the loss limits still work) until the model loads; one refused for good
   (``ModelError``, a misfit) retires its challenger and closes the slice.
5. **Decide** (:meth:`decide`): each open slice decides at the close with its own model
   (``live.shadow.model_signals``, the in-sample rule included) and sizes entries from its own
   equity (``live.entries.EntryPlanner``). A challenger that raises is retired (rule 4 closes it).
6. **Risk** (:meth:`pre_trade`, ``live.slice_risk``): each book against its own limits, then
   all together against the session's.
7. **Persist** (:meth:`persist`): the slices' approved intents as tagged order rows (audited
   ``order_decided`` with ``slice``) in the bar's transaction; the engine sends them with the
   champion's through the session's broker, which hands each to its slice's book.

Paper sessions, and live ones on one spot venue (``live.slice_venue``: no paper book; the
engine hands each fill to its order's book, :meth:`SliceStage.book_for`; elsewhere a share is
refused, and one named before runs in shadow). A slice's risk state (loss limits, throttle) is stored on its
challenger row (``slice_risk_state``); the session's with the session. The champion's book is
judged at its share (``1 -`` the funded shares, never under ``1 - MAX_TOTAL_SHARE``: a database
that says otherwise is audited ``champion_share_clamped``, never an error inside the bar), its
throttle memory kept when the share changes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import replace

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from live.brokers.base import Broker
from live.brokers.paper import PaperBroker
from live.entries import EntryPlanner
from live.feeds.base import CandleBatch
from live.orders import apply_state, new_order, slice_prefix
from live.risk_stage import portfolio_snapshot
from live.shadow import ShadowStage, model_signals
from live.slice_book import ACTIVE, Slice, open_orders, retire, risk_state
from live.slice_funding import transfer, watch
from live.slice_risk import CHAMPION, SliceIntents, pre_trade_slices
from live.slice_venue import cap_entries, committed, splits_on
from live.venues import instrument_of, key_of, sent_to
from tradeloop.backtest import BacktestConfig
from tradeloop.challengers.books import FUNDED, slice_book
from tradeloop.challengers.evidence import ChallengerStore, PairedBar
from tradeloop.challengers.slices import MAX_TOTAL_SHARE, champion_share, slice_risk_config
from tradeloop.ops import Fill, OpsStore, Order, TradingSession
from tradeloop.ops.challenger_models import ChallengerRow
from tradeloop.portfolio import Portfolio
from tradeloop.risk import MarketRules, PortfolioSnapshot, RiskConfig, RiskState
from tradeloop.risk.checks import flatten_intents
from tradeloop.thresholds import ThresholdModel
from tradeloop.trading import FillRecord, InstrumentId, OrderIntent, OrderSide

log = logging.getLogger(__name__)

__all__ = ["Slice", "SliceStage"]


class SliceStage:
    """The capital slices of one session (module rules); constructed cheaply, reads at :meth:`reload`
    or the first bar."""

    def __init__(
        self,
        *,
        store: OpsStore,
        session: TradingSession,
        broker: Broker,
        backtest: BacktestConfig,
        risk_config: RiskConfig,
        shadow: ShadowStage,
        sync_every_bars: int = 10,
    ):
        self.store, self.session, self.backtest, self.risk_config = store, session, backtest, risk_config
        self.paper = broker if isinstance(broker, PaperBroker) else None  # each slice has its own paper book
        self._cannot = None if self.paper is not None else splits_on(broker, session)  # why no split trades here
        self.broker = broker if self._cannot is None else None
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

    def book_for(self, order: Order) -> Slice | None:
        """The funded slice an order's fills belong to (``live.slice_venue`` rule 2): the one its
        tag names, decided since that slice was funded, the rule by which a restart rebuilds the
        slice (``tradeloop.challengers.books.slice_book``); None: the champion's (a slice closed
        by now included: its money went back to the champion's book)."""
        for s in self._funded():
            if order.capital_slice == s.artifact and order.decided_ts >= (s.since or 0):
                return s
        if order.capital_slice is not None:
            log.error("session %s: a fill of order %s of slice %s, which holds no money now: the champion's book",
                      self.session.name, order.client_order_id, order.capital_slice[:12])  # fmt: skip
        return None

    def holdings(self) -> list[tuple[str, float, dict[str, float]]]:
        """(artifact, cash, positions by session key) of every funded slice."""
        return [(s.artifact, s.portfolio.cash, s.positions()) for s in self._funded()]

    # ------------------------------------------------------------------ the slices, from the database
    def reload(self, session: TradingSession) -> None:
        """Every slice as the database has it (``session``: as just read): at a (re)start, before
        the open orders are reconciled (each slice's paper book must exist to take its orders back).
        Nothing of a bar that did not commit is kept (its approved orders, its evidence)."""
        self.session = session
        self.slices.clear()
        self._approved, self._evidence = [], []
        self._bar_ts, self._loaded = None, False
        if self._cannot is not None and (named := ChallengerStore(self.store).slices(session.id)):
            log.error("session %s: capital slices %s do not trade (%s); they run in shadow",
                      session.name, [r.artifact[:12] for r in named], self._cannot)  # fmt: skip
        self._sync()

    def _sync(self) -> None:
        """Rule 1's full read: the slices there are, new ones made, missing models read again."""
        if self.broker is None:
            return
        self._loaded = True
        rows = {r.artifact: r for r in ChallengerStore(self.store).slices(self.session.id)}
        for gone in set(self.slices) - set(rows):
            del self.slices[gone]
        for artifact, row in sorted(rows.items()):
            if artifact not in self.slices and (made := self._make(row)) is not None:
                self.slices[artifact] = made
            elif (known := self.slices.get(artifact)) is not None and known.model is None and not known.retiring:
                known.model = self._model(known.artifact, row.status)  # holding: read again
                if known.model is None and self.shadow.refused(artifact):
                    known.retiring, known.why = True, "its model was refused"
        self._statuses({a: (r.status, r.capital_share) for a, r in rows.items()})

    def _refresh(self) -> None:
        """Rule 1's per-bar read: each slice's challenger's status and share (one small query)."""
        with self.store.transaction() as db:
            rows = db.execute(
                select(ChallengerRow.artifact, ChallengerRow.status, ChallengerRow.capital_share).where(
                    ChallengerRow.session_id == self.session.id, ChallengerRow.artifact.in_(list(self.slices))
                )
            ).all()
        self._statuses({a: (status, share) for a, status, share in rows})

    def _statuses(self, rows: Mapping[str, tuple[str, float | None]]) -> None:
        for artifact in sorted(self.slices):
            known = self.slices[artifact]
            status, share = rows.get(artifact, ("retired", known.share))
            if status not in ACTIVE and not known.retiring:
                known.retiring, known.why = True, f"its challenger was {status}"
            if known.state != "waiting":
                continue
            if known.retiring:  # never funded: nothing to close
                del self.slices[artifact]
            elif share is not None and not math.isclose(share, known.share):  # named again with another share
                known.share, known.risk = share, RiskState(slice_risk_config(self.risk_config, share))

    def _model(self, artifact: str, status: str) -> ThresholdModel | None:
        if status not in ACTIVE:
            return None
        model = self.shadow.load_model(artifact)
        if model is None and self.shadow.refused(artifact):  # for good: its challenger retires (idempotent)
            ChallengerStore(self.store).retire(self.session.id, artifact, actor="engine",
                                               detail={"refused": "its model cannot serve the session"})  # fmt: skip
        return model

    def _make(self, row: ChallengerRow) -> Slice | None:
        assert self.broker is not None and row.capital_share is not None
        model = self._model(row.artifact, row.status)
        funded = row.slice_state in FUNDED and row.slice_cash is not None
        if model is None and not funded:
            return None  # refused (retired), or unreadable now: tried at the next sync
        self.shadow.sliced.add(row.artifact)
        prefix = slice_prefix(self.session.id, row.id)
        book = self.paper.slice_book(prefix) if self.paper is not None else None
        config = slice_risk_config(self.risk_config, row.capital_share)
        made = Slice(
            row_id=row.id, artifact=row.artifact, share=row.capital_share, prefix=prefix, venue=self.session.exchange,
            model=model, broker=book,
            planner=EntryPlanner(self.backtest, venue=self.session.exchange, timeframe=self.session.timeframe),
            risk=risk_state(row, config), announced=row.slice_state == "waiting",
        )  # fmt: skip
        if row.status not in ACTIVE:
            made.retiring, made.why = True, f"its challenger was {row.status}"
        elif model is None and self.shadow.refused(row.artifact):
            made.retiring, made.why = True, "its model was refused"
        if funded:
            made.state, made.since = str(row.slice_state), row.slice_ts
            with self.store.transaction() as db:
                made.portfolio = slice_book(db, self.session, row)
            made.equity = made.before = self._last_equity(row.artifact, made.portfolio)
        return made

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
        elif self.slices:
            self._refresh()
        self._bars += 1
        self._bar_ts, self._champion_before = batch.ts, equity
        for s in self._funded():
            s.before = s.equity
            if s.broker is not None:  # paper: the slice's book fills with its cash (a venue's reports: rule 7)
                s.ended = await s.broker.on_bar(batch, cash=s.portfolio.cash)

    def settle(self, db: Session, ts: int, *, last: Mapping[str, float]) -> None:
        """Rule 2."""
        self._last = last
        for s in self._funded():
            for state in s.ended:
                for fill in apply_state(db, state, session_id=self.session.id):
                    s.portfolio.apply_fill(self._record(fill))
            s.ended = []
            s.portfolio.mark({instrument_of(self.session.exchange, k): last.get(k) for k in s.positions()})
            s.equity = s.portfolio.equity()
        watch(db, ts, session=self.session, slices=self._funded())

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
        """Rule 4 (``live.slice_funding``); the champion's equity after it."""
        for closed in transfer(db, ts, session=self.session, slices=self.slices, champion=champion):
            if self.paper is not None:
                self.paper.slices.pop(closed.prefix, None)
        return champion.equity()

    def decide(self, db: Session, ts: int, *, window: pl.DataFrame, last: Mapping[str, float], flatten: bool) -> None:
        """Rule 5 (and rule 4's flattening orders)."""
        for s in self._funded():
            s.intents = []
            if s.state == "closing" or flatten:
                pending = {
                    o.symbol for o in open_orders(db, self.session.id, s) if o.reduce_only and o.parent_id is None
                }
                intents = flatten_intents(self._snapshot(s))
                s.intents = [i for i in intents if key_of(self.session.exchange, i.instrument) not in pending]
                continue
            if s.model is None:
                continue  # holding until its model can be read (module rules)
            try:
                signals = model_signals(s.model, window, ts, in_sample=bool(self.session.in_sample))
                s.intents = s.planner.decide(
                    signals, window=window, positions=s.positions(), equity=s.equity, last=last,
                    broker=s.broker or self.broker,  # type: ignore[arg-type]  # funded: a broker
                )  # fmt: skip
                if self.paper is None:  # a venue: the slice spends its own cash only (live.slice_venue rule 3)
                    cash = s.portfolio.cash - committed(db, self.session.id, s.artifact)
                    s.intents = cap_entries(s.intents, cash=cash, config=self.backtest, last=last)
            except Exception as exc:  # a failing challenger never stops the champion's bar
                log.error("session %s: slice %s failed to decide at %d; retired, its slice closes",
                          self.session.name, s.artifact[:12], ts, exc_info=exc)  # fmt: skip
                retire(db, self.session.id, s, {"bar_ts": ts, "error": f"{type(exc).__name__}: {exc}"[:200]})

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
        books = [
            SliceIntents(name=CHAMPION, intents=intents, snapshot=snapshot, state=self._champion_state(db, funded))
        ]
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
    def _champion_state(self, db: Session, funded: list[Slice]) -> RiskState:
        """The champion's slice limits at its share now (module rules: clamped, never raised; its
        throttle memory kept when the share changes)."""
        share = champion_share(s.share for s in funded)
        floor = 1.0 - MAX_TOTAL_SHARE
        if share < floor - 1e-12:
            audit_detail = {"share": share, "clamped_to": floor, "slices": {s.artifact: s.share for s in funded}}
            if self._champion_risk is None or not math.isclose(self._champion_risk[0], floor):
                OpsStore.audit(db, "champion_share_clamped", session_id=self.session.id, detail=audit_detail)
                log.error("session %s: the funded slices hold %g of the capital; the champion is judged at %g",
                          self.session.name, 1.0 - share, floor)  # fmt: skip
            share = floor
        if self._champion_risk is None or not math.isclose(self._champion_risk[0], share):
            kept = RiskState(slice_risk_config(self.risk_config, share))
            if self._champion_risk is not None:
                kept.order_ts.extend(self._champion_risk[1].order_ts)
            self._champion_risk = (share, kept)
        return self._champion_risk[1]

    def _snapshot(self, s: Slice) -> PortfolioSnapshot:
        return portfolio_snapshot(
            s.portfolio, {instrument_of(self.session.exchange, k): px for k, px in self._last.items()}
        )


def _ret(after: float, before: float) -> float:
    return after / before - 1.0 if before > 0 and math.isfinite(before) else 0.0
