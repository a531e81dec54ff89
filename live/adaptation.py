"""The engine's adaptation step: closed trades' outcomes move the threshold in force.

Once per bar, inside the bar's transaction, after the bar's fills are settled and before it
decides (so an adjustment's ``bar_ts`` is the first bar it decides):

1. Controls (``tradeloop.thresholds.feedback`` rule 4), each recorded as an audit row
   ``threshold_adaptation`` with its bar: ``start`` from the champion's own threshold when a
   champion first decides or another one is promoted, and after an operator's ``revert`` (then
   a ``thresholds`` row ``model`` records the model's own threshold in force again); ``hold``
   while an operator's freeze or an override is in force, ``release`` after.
2. The fills stored since the last bar build round trips (``TradeBook``); the closed ones count
   at the first bar at or after their closing fill (``due``) and go through the learner
   (``FeedbackLoop.step``): an audit row ``threshold_adapted`` with the inputs, and a
   ``thresholds`` row ``online`` when the threshold moved.
3. The slot decides with the adapted threshold (``ModelSlot.adapt``).

Off unless the session was made with ``adapt_thresholds`` (``tradeloop.ops.adaptation``): the
first bar reads that once, and a session that does not adapt does nothing more. An engine that
resumes rebuilds its learner by replaying the session's stored fills and controls through the
same functions a research replay calls (``tradeloop.thresholds.feedback.replay``). Nothing here
reads the wall clock.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from live.models import ModelSlot
from tradeloop.ops import EquityPoint, OpsStore, ThresholdInForce, TradingSession
from tradeloop.ops.adaptation import (
    ADAPTED,
    CONTROL_EVENT,
    ONLINE,
    adaptation_config,
    controls,
    entry_probabilities,
    is_frozen,
    last_control,
    latest_revert_id,
    trade_fills,
)
from tradeloop.thresholds.feedback import (
    Adjustment,
    ClosedTrade,
    Control,
    ControlAction,
    FeedbackLoop,
    TradeBook,
    due,
    replay,
)

log = logging.getLogger(__name__)


class ThresholdAdaptation:
    """One session's adaptation step (module rules). Constructed cheaply; reads at its first bar."""

    def __init__(self, *, store: OpsStore, session: TradingSession) -> None:
        self.store, self.session = store, session
        self.loop: FeedbackLoop | None = None
        self._read = False
        self._probabilities: dict[int, float] = {}
        self._book = TradeBook(probability_of=self._probabilities.get)
        self._pending: list[ClosedTrade] = []
        self._last_fill = self._last_order = 0
        self._artifact: str | None = None  # the champion the learner adapts
        self._revert_seen = 0

    def on_bar(self, db: Session, bar_ts: int, *, slot: ModelSlot) -> Adjustment | None:
        """The bar's step (module rules 1-3); the adjustment made, if any."""
        if not self._read:
            self._start(db)
        if self.loop is None:
            return None
        self._controls(db, bar_ts, slot)
        self._read_fills(db)
        adjustment = self.loop.step(bar_ts, due(self._pending, bar_ts))
        if adjustment is not None:
            self._record(db, adjustment)
        slot.adapt(self.loop.threshold)
        return adjustment

    # ------------------------------------------------------------------ steps
    def _start(self, db: Session) -> None:
        """Read the session's settings; a resumed one replays its history into the learner."""
        self._read = True
        config = adaptation_config(db, self.session.id)
        if config is None:
            return
        self.loop = FeedbackLoop(config=config)
        self._read_fills(db)
        done = list(
            db.scalars(select(EquityPoint.ts).where(EquityPoint.session_id == self.session.id).order_by(EquityPoint.ts))
        )
        applied = controls(db, self.session.id)
        replay(self.loop, self._pending, bars=done, controls=applied)
        detail = last_control(db, self.session.id)
        self._artifact, self._revert_seen = detail.get("artifact"), int(detail.get("revert_id", 0))

    def _controls(self, db: Session, bar_ts: int, slot: ModelSlot) -> None:
        assert self.loop is not None
        now = slot.current
        revert = latest_revert_id(db, self.session.id)
        if revert > self._revert_seen:
            self._revert_seen, self._artifact = revert, None  # restart from the model's own
            if now.model is not None and slot.own_threshold is not None:
                db.add(
                    ThresholdInForce(
                        session_id=self.session.id, source="model", artifact=now.artifact,
                        threshold=slot.own_threshold, bar_ts=bar_ts,
                        reason=f"champion {str(now.artifact)[:12]}: its own threshold again (reverted); adaptation "
                        "restarts from it",
                    )
                )  # fmt: skip
        if now.model is not None and now.artifact != self._artifact and slot.own_threshold is not None:
            self._artifact = now.artifact
            self._apply(db, Control(bar_ts=bar_ts, action="start", threshold=slot.own_threshold))
        held = is_frozen(db, self.session.id) or slot.overridden
        if held != self.loop.held:
            action: ControlAction = "hold" if held else "release"
            self._apply(db, Control(bar_ts=bar_ts, action=action))

    def _apply(self, db: Session, control: Control) -> None:
        assert self.loop is not None
        self.loop.control(control)
        OpsStore.audit(
            db,
            CONTROL_EVENT,
            session_id=self.session.id,
            detail={
                "bar_ts": control.bar_ts,
                "action": control.action,
                "threshold": self.loop.threshold if control.action == "start" else control.threshold,
                "artifact": self._artifact,
                "revert_id": self._revert_seen,
            },
        )

    def _read_fills(self, db: Session) -> None:
        """The fills stored since the last read into round trips; closed ones wait in ``_pending``."""
        fills = trade_fills(db, self.session.id, after_id=self._last_fill)
        if not fills:
            return
        new = entry_probabilities(db, self.session.id, after_order_id=self._last_order)
        self._probabilities.update(new)
        self._last_order = max([self._last_order, *new])
        for fill in fills:
            self._pending.extend(self._book.add(fill))
        self._last_fill = fills[-1].id

    def _record(self, db: Session, adjustment: Adjustment) -> None:
        OpsStore.audit(
            db, ADAPTED, session_id=self.session.id, detail={**adjustment.detail(), "artifact": self._artifact}
        )
        if not adjustment.moved:
            return
        db.add(
            ThresholdInForce(
                session_id=self.session.id, source=ONLINE, artifact=self._artifact, threshold=adjustment.new,
                bar_ts=adjustment.bar_ts,
                reason=f"adapted from {adjustment.old:.4f} by {len(adjustment.outcomes)} closed outcome(s): hit rate "
                f"{adjustment.hit_rate:.2f} over {adjustment.samples:.1f} samples",
            )
        )  # fmt: skip
        log.info("session %s: threshold adapted %.4f -> %.4f", self.session.name, adjustment.old, adjustment.new)
