"""The model in force: the registry's champion, swapped without a restart.

``ModelSlot.refresh`` runs between bars, so a decision in flight always finishes on the
model it started with. It never raises: when the champion is missing, its manifest is
malformed, its artifact fails to load (tampered, corrupt, a classifier file naming types
off the allow-list), it belongs to another strategy, it was trained on another universe
(exchange, timeframe, or symbols the session trades but the model never saw), it needs a
longer rolling window than the session decides on (``tradeloop.thresholds.warmup``: its
strategy's warm-up and the features it reads) or it is stale, the slot falls back to the
static break-even threshold p* and **reduce-only**: exits still pass, no new position is
opened. The reason says what is wrong; the engine records it (audit row ``model_fallback``
and a thresholds row) whenever it changes.

The demo is out of sample: a champion trained past the bar (``trained_until >= now_ms``: it
learnt from the bar it would decide, or later ones) is not used at that bar (reduce-only,
the reason names both times) unless the slot belongs to a session created in-sample
(``allow_in_sample``). The rule lifts by itself at the first bar after the training end.

A model saved before its universe was recorded cannot be checked against the session;
it is used, and the reason says the universe was not checked.

An operator's threshold override (``tradeloop.ops.overrides``, written by the API) is read
from the operational database at every refresh of a slot given its session's store: while
one is in force, a fresh champion decides with the override's threshold instead of its
learned one (the reason says so, so the engine records the change at that bar). Where the
champion does not decide (stale, in-sample, unfit, missing) the override changes nothing.
A database that cannot be read keeps the override last read.

A session that adapts its threshold (``live.adaptation``) hands the slot the adapted one
(``adapt``): a fresh champion without an override decides with it, its reason unchanged (the
adaptation records its own rows); an override, a stale or missing champion ignore it.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session

from tradeloop.errors import ModelError
from tradeloop.ops import OpsStore, ThresholdInForce, TradingSession
from tradeloop.ops.champion_log import iso_utc
from tradeloop.ops.overrides import Override, current_override
from tradeloop.registry import ModelRegistry
from tradeloop.strategies import Strategy, get_strategy
from tradeloop.thresholds import ThresholdModel, Universe
from tradeloop.thresholds.warmup import min_window_bars

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InForce:
    """What decides entries now. ``model`` is None in the reduce-only fallback."""

    strategy: Strategy
    model: ThresholdModel | None
    artifact: str | None
    threshold: float
    reason: str

    @property
    def source(self) -> str:
        return "model" if self.model is not None else "static"


class ModelSlot:
    def __init__(
        self,
        registry: ModelRegistry,
        *,
        strategy: Strategy,
        universe: Universe | None = None,
        window_bars: int | None = None,
        allow_in_sample: bool = False,
        store: OpsStore | None = None,
        session_id: int | None = None,
    ):
        """``universe``: the session's exchange, timeframe and symbols; a champion trained on
        another one is not used (None: not checked, for research tools without a session).
        ``window_bars``: the bars per symbol each decision sees; a champion that needs more is
        not used (None: not checked). ``allow_in_sample``: use a champion at bars it was
        trained on (a session created in-sample). ``store`` and ``session_id``: where the
        session's threshold override is read (None: no override)."""
        self.registry = registry
        self.name = strategy.name
        self.universe = universe
        self.window_bars = window_bars
        self.allow_in_sample = allow_in_sample
        self.store, self.session_id = store, session_id
        self._override: Override | None = None  # the last one read
        self._loaded: tuple[str, ThresholdModel] | None = None
        self._failed: tuple[str, str] | None = None  # (artifact, why): not retried every bar
        self._in_sample_held: InForce | None = None  # the in-sample fallback in force, if any
        self.current = InForce(strategy, None, None, float("nan"), "no champion loaded yet")
        self.adapted: tuple[str, float] | None = None  # (artifact, threshold) the adaptation gave (live.adaptation)
        self.overridden = False  # an override decides now
        self._own = False  # a fresh champion decides with its own (or the adapted) threshold

    @classmethod
    def for_session(
        cls,
        registry: ModelRegistry,
        session: TradingSession,
        *,
        window_bars: int | None = None,
        store: OpsStore | None = None,
    ) -> ModelSlot:
        """The slot of a trading session: its strategy, checked against its universe and the
        engine's ``window_bars``; in-sample bars only for a session created in-sample; the
        session's threshold override read from ``store``."""
        return cls(
            registry,
            strategy=get_strategy(session.strategy),
            universe=Universe(exchange=session.exchange, timeframe=session.timeframe, symbols=tuple(session.symbols)),
            window_bars=window_bars,
            allow_in_sample=bool(getattr(session, "in_sample", False)),
            store=store,
            session_id=session.id,
        )

    def refresh(self, now_ms: int) -> bool:
        """Pick up a promotion or rollback; True when what decides entries changed. Never raises."""
        self._own = self.overridden = False
        try:
            entry = self.registry.champion(self.name)
        except Exception as exc:
            if not isinstance(exc, ModelError):
                log.exception("reading the champion of %s failed", self.name)
            return self._set(self._fallback(f"registry unreadable: {exc}"))
        if entry is None:
            return self._set(self._fallback("no champion in the registry"))
        if self._loaded is None or self._loaded[0] != entry.artifact:
            if self._failed is not None and self._failed[0] == entry.artifact:
                return self._set(self._fallback(self._failed[1]))
            try:
                model = self.registry.model_of(entry.artifact, strategy=self.name)
                misfit = self._misfit(model)
            except Exception as exc:
                if not isinstance(exc, ModelError):
                    log.exception("loading champion %s failed", entry.artifact[:12])
                misfit = f"failed to load: {exc}"
            if misfit is not None:
                why = f"champion {entry.artifact[:12]} {misfit}"
                self._failed = (entry.artifact, why)
                log.error("%s; reduce-only", why)
                return self._set(self._fallback(why))
            self._loaded, self._failed = (entry.artifact, model), None
        artifact, model = self._loaded
        label = f"champion {artifact[:12]}"
        if self.universe is not None and model.universe is None:
            label += " (universe not recorded: not checked)"
        if not self.allow_in_sample and model.trained_until >= now_ms:
            return self._set(self._in_sample(label, model, artifact, now_ms))
        if model.is_stale(now_ms) and model.on_stale == "reduce_only":  # the retrain policy's rule
            return self._set(
                InForce(
                    model.strategy,
                    None,
                    artifact,
                    model.estimator.p_star_,
                    f"{label} is stale (trained until {model.trained_until})",
                )
            )
        if model.is_stale(now_ms):  # on_stale="break_even": entries need the break-even p*
            label += f" is stale (trained until {model.trained_until}): break-even p* only"
        elif (override := self._read_override()) is not None:
            model = _with_threshold(model, override.threshold)
            label += f" with its threshold overridden to {override.threshold:.4f} ({override.reason})"
            self.overridden = True
        else:
            self._own = True
            if self.adapted is not None and self.adapted[0] == artifact:  # another champion starts on its own
                model = _with_threshold(model, self.adapted[1])
        return self._set(InForce(model.strategy, model, artifact, model.bar(now_ms), label))

    @property
    def own_threshold(self) -> float | None:
        """The loaded champion's learned threshold (None: none loaded)."""
        return None if self._loaded is None else float(self._loaded[1].estimator.threshold_)

    def adapt(self, threshold: float | None) -> None:
        """Decide with the adaptation's ``threshold`` from now where a fresh champion decides
        without an override (None: its own again)."""
        self.adapted = None if threshold is None or self._loaded is None else (self._loaded[0], threshold)
        if self._own and self._loaded is not None and self.current.model is not None:
            own = self._loaded[1]
            model = own if threshold is None else _with_threshold(own, threshold)
            self.current = dataclasses.replace(self.current, model=model, threshold=model.estimator.threshold_)

    def _read_override(self) -> Override | None:
        """The session's override in force (the last one read when the database fails)."""
        if self.store is None or self.session_id is None:
            return None
        try:
            self._override = current_override(self.store, self.session_id)
        except Exception as exc:  # noqa: BLE001 - refresh never raises; the bar meets a lost database
            log.warning("reading the threshold override failed (%s); keeping the last one read", exc)
        return self._override

    def fail(self, reason: str) -> None:
        """The model in force failed while deciding: reduce-only until another champion is
        promoted (this artifact is not tried again)."""
        artifact = self.current.artifact or (self._loaded[0] if self._loaded else "")
        why = f"champion {artifact[:12]} {reason}"
        log.error("%s; reduce-only", why)
        self._failed, self._loaded = (artifact, why), None
        self._set(self._fallback(why))

    def record(self, db: Session, *, session: TradingSession, bar_ts: int) -> None:
        """Store what decides the session's entries from the bar ``bar_ts`` on (a
        ``ThresholdInForce`` row; ``since``: when, by the wall clock), with its audit row."""
        now = self.current
        known = now.threshold == now.threshold  # NaN: no model ever loaded, no p* known
        db.add(
            ThresholdInForce(
                session_id=session.id,
                source=now.source,
                artifact=now.artifact,
                threshold=now.threshold if known else None,
                reason=now.reason[:200],
                bar_ts=bar_ts,
            )
        )
        OpsStore.audit(
            db,
            "model_swapped" if now.model is not None else "model_fallback",
            session_id=session.id,
            detail={"artifact": now.artifact, "reason": now.reason},
        )
        log.info("session %s: entries now decided by %s (%s)", session.name, now.source, now.reason)

    def _misfit(self, model: ThresholdModel) -> str | None:
        """Why ``model`` cannot serve this session (its universe, its window), or None when it can."""
        if self.window_bars is not None:
            need = min_window_bars(model.strategy, model.features)
            if need > self.window_bars:
                return (
                    f"needs a rolling window of {need} bars per symbol (its strategy's warm-up and the "
                    f"features it reads), the session decides on window_bars={self.window_bars}; run the "
                    f"session with --window-bars {need} or more, or promote a model that fits"
                )
        if self.universe is None or model.universe is None:
            return None
        problems = model.universe.mismatches(self.universe)
        if not problems:
            return None
        return (
            f"does not fit the session: trained on {model.universe.describe()}, the session trades "
            f"{self.universe.describe()} ({'; '.join(problems)}); promote a model trained on the "
            "session's universe"
        )

    def _in_sample(self, label: str, model: ThresholdModel, artifact: str, now_ms: int) -> InForce:
        """Reduce-only at a bar the champion was trained on. The reason names the first such
        bar and stays the same on the following ones (recorded once, not every bar)."""
        if self.current is self._in_sample_held and self.current.artifact == artifact:
            return self.current
        self._in_sample_held = InForce(
            model.strategy,
            None,
            artifact,
            model.estimator.p_star_,
            f"{label} was trained until {iso_utc(model.trained_until)}, at or after this bar {iso_utc(now_ms)}: "
            "deciding with it would be in-sample (reduce-only until the first bar after its training end; "
            "a session created with --allow-in-sample uses it)",
        )
        return self._in_sample_held

    def _fallback(self, reason: str) -> InForce:
        p_star = self._loaded[1].estimator.p_star_ if self._loaded else float("nan")
        return InForce(self.current.strategy, None, None, p_star, reason)

    def _set(self, new: InForce) -> bool:
        changed = (new.source, new.artifact, new.reason) != (
            self.current.source,
            self.current.artifact,
            self.current.reason,
        )
        self.current = new
        return changed


def _with_threshold(model: ThresholdModel, threshold: float) -> ThresholdModel:
    """``model`` deciding with ``threshold`` instead of its learned one (its classifier shared)."""
    estimator = copy.copy(model.estimator)
    estimator.threshold_ = threshold
    return dataclasses.replace(model, estimator=estimator)
