"""The engine's shadow stage: a session's challengers decide beside its champion, on the same
bars, and are simulated with the paper broker's rules (no order is sent anywhere).

Per bar (``LiveEngine.on_batch``), for each challenger in shadow (``tradeloop.challengers``):

1. **Before the bar's transaction** (:meth:`ShadowStage.run`): its paper book
   (``live.brokers.paper``, built from the session's ``BacktestConfig``) fills what it decided at
   the last close, exactly as the paper broker fills the champion's orders; its own portfolio
   (``tradeloop.portfolio``) takes the fills and is marked at the bar's closes; then it decides
   at this close with the same code as the engine (``enrich`` + ``apply_model`` on the engine's
   rolling window, ``live.entries.EntryPlanner`` for sizes and legs) and books the orders for
   the next bar. The engine's in-sample rule holds: at a bar its model was trained on (and the
   session is not in-sample) it takes no entry, only exits. A backtest of the challenger over
   the same bars gives the same fills (the parity test).
2. **In the bar's transaction** (:meth:`ShadowStage.persist`): one row of paired evidence per
   challenger: the champion's return at this close (the session's equity over its equity at
   the last close), the champion's artifact, and the challenger's return (its shadow equity
   over its own), merged, so a bar that comes again writes it once. A bar that comes again is
   not simulated twice. A bar where the champion did not decide (the session paused, or
   waiting for an acknowledgement: a tripped kill switch, a drift) pairs nothing: the
   challenger still trades its book, but a champion that could not act is no comparison. The
   test counts only the bars paired with the champion in force.
3. **Recommendation**: every ``check_every_bars`` bars, before simulating, each challenger's
   committed evidence is judged (``tradeloop.challengers.promotion.recommend_from_live``);
   when the sequential test decides, the challenger becomes ``recommended`` (audited) and stays
   in shadow. The engine never changes the registry's champion: it is global to the strategy,
   so an administrator promotes a recommended challenger
   (``POST /sessions/{id}/challengers/{artifact}/promote``) and the engines' ``ModelSlot``
   picks it up between bars. A session trading in-sample bars never recommends. A promoted or
   retired challenger leaves the shadow.

The challengers are read from the database at the first bar and every ``sync_every_bars``
bars after it (one named later joins within that many bars).
A challenger's book starts flat, with the champion's equity at the last close, when it joins
and again after a restart (the paper book lives in memory); its stored evidence is kept, so
the test goes on over every bar recorded. A challenger that cannot serve the session (unknown
or tampered artifact, another strategy or universe) is logged and retired in the database,
audited with why (``challenger_retired``, ``refused``): a restart does not try it again and the
API does not show it as running. One that needs a longer window than this engine keeps is
skipped by this engine only (an engine with a wider window runs it); a registry that cannot
be read is tried again at the next sync.

A challenger named with a ``capital_share`` on a paper session, or a live one on one spot venue
(``live.slice_venue``), trades a real slice of the session's capital instead (``live.slices``):
it is not simulated here, but judged here (rule 3) on the evidence its slice records.

4. **A challenger that raises** while it fills, marks or decides never stops the champion's
   bar: it is logged with its artifact, dropped from the shadow and retired in the database
   (audit ``challenger_retired`` with the bar and the error), so a restart does not run it
   again; the other challengers and the champion carry on.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl

from live.brokers.base import OrderRequest
from live.brokers.paper import PaperBroker
from live.entries import EntryPlanner
from live.feeds.base import CandleBatch
from live.orders import client_order_id
from live.venues import instrument_of, key_of
from tradeloop.backtest import BacktestConfig
from tradeloop.challengers import SequentialConfig
from tradeloop.challengers.evidence import ChallengerStore, PairedBar
from tradeloop.challengers.promotion import recommend_from_live
from tradeloop.errors import ModelError
from tradeloop.ops import OpsStore, TradingSession
from tradeloop.ops.database import is_connection_error
from tradeloop.portfolio import Portfolio
from tradeloop.registry import ModelRegistry
from tradeloop.strategies.signals import ENTRIES
from tradeloop.thresholds import ThresholdModel, Universe
from tradeloop.thresholds.decide import apply_model, enrich_latest
from tradeloop.thresholds.warmup import min_window_bars
from tradeloop.trading import FillRecord, OrderSide

log = logging.getLogger(__name__)

__all__ = ["ShadowBook", "ShadowStage", "model_signals"]


class ShadowBook:
    """One challenger's simulated account (module rule 1)."""

    def __init__(
        self, *, artifact: str, model: ThresholdModel, backtest: BacktestConfig, session: TradingSession, cash: float
    ):
        self.artifact, self.model, self.venue = artifact, model, session.exchange
        self.in_sample = bool(getattr(session, "in_sample", False))
        self.broker = PaperBroker.of(backtest)
        self.planner = EntryPlanner(backtest, venue=session.exchange, timeframe=session.timeframe)
        self.portfolio = Portfolio(cash=cash)
        self.equity = cash  # at the last close
        self.fills: list[FillRecord] = []  # since it joined (a test reads them; one process's life)

    async def on_bar(self, batch: CandleBatch, *, window: pl.DataFrame, last: Mapping[str, float]) -> tuple[float, int]:
        """Fill, mark, decide and book (rule 1); its equity at this close and the orders decided."""
        for state in await self.broker.on_bar(batch, cash=self.portfolio.cash):
            for fill in state.fills:
                record = FillRecord(
                    instrument=instrument_of(self.venue, fill.symbol), side=OrderSide(fill.side),
                    quantity=fill.quantity, price=fill.price, fee=fill.fee, ts=fill.ts, trade_id=fill.trade_id,
                )  # fmt: skip
                self.portfolio.apply_fill(record)
                self.fills.append(record)
        positions = {key_of(self.venue, p.instrument): p.quantity for p in self.portfolio.positions()}
        self.portfolio.mark({instrument_of(self.venue, s): last.get(s) for s in positions})
        equity = self.portfolio.equity()
        positions = {key_of(self.venue, p.instrument): p.quantity for p in self.portfolio.positions()}
        intents = self.planner.decide(
            self._signals(window, batch.ts), window=window, positions=positions, equity=equity, last=last,
            broker=self.broker,
        )  # fmt: skip
        for intent in intents:
            symbol = key_of(self.venue, intent.instrument)
            await self.broker.submit(
                OrderRequest(
                    client_order_id(0, batch.ts, symbol, intent.kind), symbol, intent.side.value, intent.quantity,
                    intent.quote_amount, order_type=intent.order_type, time_in_force=intent.time_in_force,
                    price=intent.price, trigger_price=intent.trigger_price, reduce_only=intent.reduce_only,
                )
            )  # fmt: skip
        return equity, len(intents)

    def _signals(self, window: pl.DataFrame, ts: int) -> list[tuple[str, int]]:
        return model_signals(self.model, window, ts, in_sample=self.in_sample)


def model_signals(model: ThresholdModel, window: pl.DataFrame, ts: int, *, in_sample: bool) -> list[tuple[str, int]]:
    """A challenger's (symbol, flags) at ``ts``, as ``LiveEngine._decide`` computes the champion's,
    with the engine's in-sample rule (rule 1; ``in_sample``: the session's flag)."""
    enriched = enrich_latest(window, model.strategy, model.features, ts=ts)
    decided = apply_model(enriched, model, now_ms=ts)
    if not in_sample and model.trained_until >= ts:  # the engine's in-sample rule: exits only
        decided = decided.with_columns(pl.col("signal") & pl.lit(~ENTRIES, dtype=pl.Int8))
    rows = decided.filter(pl.col("ts") == ts).select("symbol", "signal").sort("symbol").rows()
    return [(s, int(f)) for s, f in rows if f]


@dataclass(kw_only=True)
class _Bar:
    ts: int
    champion_before: float  # the champion's equity at the last close
    bars: list[tuple[ShadowBook, float, float, int]] = field(default_factory=list)  # book, before, after, orders


class ShadowStage:
    """The challengers of one session (module rules); constructed cheaply, reads at the first bar.

    Parameters
    ----------
    store, session, registry
        The session's database, row and model registry.
    backtest
        The session's fill and sizing rules (each challenger's paper book uses them).
    window_bars
        The engine's rolling window: a challenger that needs more is skipped.
    test
        The sequential test's options (``tradeloop.challengers.SequentialConfig``).
    check_every_bars
        Judge the challengers' evidence every this many bars (rule 3); ``None``: never recommend.
    sync_every_bars
        Read which challengers are in shadow every this many bars.
    """

    def __init__(
        self,
        *,
        store: OpsStore,
        session: TradingSession,
        registry: ModelRegistry,
        backtest: BacktestConfig,
        window_bars: int,
        test: SequentialConfig | None = None,
        check_every_bars: int | None = 10,
        sync_every_bars: int = 10,
    ):
        self.store, self.session, self.registry, self.backtest = store, session, registry, backtest
        self.window_bars, self.test, self.check_every_bars = window_bars, test or SequentialConfig(), check_every_bars
        self.sync_every_bars = sync_every_bars
        self.evidence = ChallengerStore(store)
        self.books: dict[str, ShadowBook] = {}
        self.sliced: set[str] = set()  # challengers trading a capital slice (live.slices): judged, not simulated
        self._refused: set[str] = set()
        self._bar: _Bar | None = None
        self._bars = 0

    async def run(self, batch: CandleBatch, *, window: pl.DataFrame, last: Mapping[str, float], equity: float) -> None:
        """Rules 3 then 1 for bar ``batch.ts``; ``equity``: the champion's at the last close."""
        if self._bar is not None and self._bar.ts == batch.ts:
            return  # the bar again (its transaction did not commit): simulated already
        judging = self.check_every_bars is not None and self._bars % self.check_every_bars == 0
        if judging and (self.books or self.sliced):
            self._judge()
        if self._bars % self.sync_every_bars == 0 or self.sliced & set(self.books):
            self._sync(equity)
        self._bars += 1
        bar = _Bar(ts=batch.ts, champion_before=equity)
        for artifact in sorted(self.books):
            book = self.books[artifact]
            before = book.equity
            try:
                after, orders = await book.on_bar(batch, window=window, last=last)
            except Exception as exc:  # noqa: BLE001 - a failing challenger never stops the champion's bar
                self._fail(artifact, batch.ts, exc)
                continue
            book.equity = after
            bar.bars.append((book, before, after, orders))
        self._bar = bar

    def _fail(self, artifact: str, ts: int, exc: Exception) -> None:
        """Rule 4: a challenger that raised leaves the shadow, retired in the database (audited
        with the error) so a restart does not run it again."""
        log.error(
            "session %s: challenger %s failed at bar %d; retired from the shadow",
            self.session.name, artifact, ts, exc_info=exc,
        )  # fmt: skip
        del self.books[artifact]
        self._retire(artifact, {"bar_ts": ts, "error": f"{type(exc).__name__}: {exc}"})

    def _retire(self, artifact: str, detail: dict) -> None:
        """Out of the shadow for good: retired in the database, audited with ``detail``, so
        neither a restart nor the API takes it for a challenger still running."""
        self._refused.add(artifact)
        try:
            self.evidence.retire(self.session.id, artifact, actor="engine", detail=detail)
        except Exception as db_exc:
            if is_connection_error(db_exc):
                raise  # the bar meets a lost database as every stage does
            log.exception("session %s: retiring challenger %s failed", self.session.name, artifact[:12])

    def persist(self, db, ts: int, *, equity: float, champion: str | None, decided: bool) -> None:
        """Rule 2: the bar's paired returns, in the bar's transaction; ``equity``: the champion's
        at this close; ``champion``: its artifact (None: the static fallback); ``decided``: False
        when the champion did not decide at this bar (nothing is paired)."""
        bar = self._bar
        if bar is None or bar.ts != ts or not bar.bars or not decided:
            return
        ret = _ret(equity, bar.champion_before)
        ChallengerStore.record(
            db,
            self.session.id,
            [
                PairedBar(artifact=book.artifact, ts=ts, champion=ret, challenger=_ret(after, before),
                          equity=after, orders=orders, champion_artifact=champion)
                for book, before, after, orders in bar.bars
            ],
        )  # fmt: skip

    def _sync(self, equity: float) -> None:
        """The books of the challengers in shadow now (a new one starts with ``equity``)."""
        rows = {
            r.artifact: r
            for r in self.evidence.rows(self.session.id)
            if r.status in ("shadow", "recommended") and r.artifact not in self.sliced
        }
        for gone in set(self.books) - set(rows):
            del self.books[gone]
        for artifact in sorted(set(rows) - set(self.books) - self._refused):
            model = self.load_model(artifact)
            if model is not None:
                self.books[artifact] = ShadowBook(
                    artifact=artifact, model=model, backtest=self.backtest, session=self.session, cash=equity
                )

    def load_model(self, artifact: str) -> ThresholdModel | None:
        """``artifact``'s model when it can serve this session (module rules: one that never can is
        retired, one that needs a longer window skipped); None also when the registry is unreadable now."""
        try:
            model = self.registry.model_of(artifact, strategy=self.session.strategy)
        except ModelError as exc:  # unknown, tampered, another strategy's: it never will load
            self._refuse(artifact, f"failed to load: {exc}")
            return None
        except Exception as exc:  # noqa: BLE001 - a bad challenger never stops the champion's bar
            # the registry unreadable now (a disk, a mount): tried again at the next sync
            log.error("session %s: challenger %s could not be read (%s); tried again at the next sync",
                      self.session.name, artifact[:12], exc)  # fmt: skip
            return None
        need = min_window_bars(model.strategy, model.features)
        if need > self.window_bars:  # this engine's setting: skipped here, not retired (a wider engine runs it)
            self._refused.add(artifact)
            log.error("session %s: challenger %s needs a window of %d bars, the engine keeps %d; not run in shadow "
                      "(restart the engine with --window-bars %d)", self.session.name, artifact[:12], need,
                      self.window_bars, need)  # fmt: skip
            return None
        s = self.session
        universe = Universe(exchange=s.exchange, timeframe=s.timeframe, symbols=tuple(s.symbols))
        problems = model.universe.mismatches(universe) if model.universe is not None else []
        if problems:
            self._refuse(artifact, f"does not fit the session: {'; '.join(problems)}")
            return None
        return model

    def refused(self, artifact: str) -> bool:
        """True when ``artifact`` can never serve this engine (refused at its load: it will not be tried again)."""
        return artifact in self._refused

    def _refuse(self, artifact: str, why: str) -> None:
        log.error("session %s: challenger %s %s; retired, not run in shadow", self.session.name, artifact[:12], why)
        self._retire(artifact, {"refused": why})

    def _judge(self) -> None:
        """Rule 3 on the committed evidence of every challenger still in shadow."""
        if self.session.in_sample:
            return  # in-sample evidence never recommends (tradeloop.challengers.promotion rule 2)
        try:
            entry = self.registry.champion(self.session.strategy)
        except Exception:  # an unreadable registry: judge at a later bar
            log.exception("session %s: reading the champion to judge challengers failed", self.session.name)
            return
        champion = entry.artifact if entry is not None else None
        waiting = {r.artifact for r in self.evidence.rows(self.session.id) if r.status == "shadow"}
        for artifact in sorted((set(self.books) | self.sliced) & waiting):
            try:
                decided = recommend_from_live(self.store, self.session, artifact, champion=champion, config=self.test)
            except Exception as exc:
                if is_connection_error(exc):
                    raise  # the bar meets a lost database as every stage does
                log.exception("session %s: judging challenger %s failed", self.session.name, artifact[:12])
                continue
            if decided.recommended:
                log.warning(
                    "session %s: challenger %s recommended on live evidence (%d bars, log LR %.3f >= %.3f); "
                    "an administrator promotes it",
                    self.session.name, artifact[:12], decided.test.bars, decided.test.log_lr, decided.test.threshold,
                )  # fmt: skip


def _ret(after: float, before: float) -> float:
    return after / before - 1.0 if before > 0 and math.isfinite(before) else 0.0
