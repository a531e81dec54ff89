"""A session's threshold adaptation in the operational database (no table of its own).

Rules:

- Opt-in per session: a session made with ``adapt_thresholds`` (``SessionSpec``) gets an audit
  row ``threshold_adaptation_on`` whose detail is its ``OnlineConfig``, written with the
  session (``OpsStore.create_session``). Without it, nothing adapts.
- Every adjustment that moves the threshold is a ``thresholds`` row (source ``online``, the
  champion's artifact, the new threshold, ``bar_ts``: the first bar it decides) with an audit
  row ``threshold_adapted`` holding its inputs (``tradeloop.thresholds.feedback.Adjustment``);
  a bar whose outcomes left it where it was has the audit row only.
- The controls the engine applied are audit rows ``threshold_adaptation`` (``bar_ts``, action,
  threshold): a replay of the session reads them back (``tradeloop.thresholds.feedback`` rule 4).
- An operator freezes and unfreezes it (requests: ``thresholds`` rows ``freeze`` /
  ``unfreeze``, audited ``threshold_freeze`` / ``threshold_unfreeze`` with the actor): the
  latest one decides, from the engine's next bar. ``revert`` (``tradeloop.ops.overrides``)
  restarts it from the model's own threshold.
- The model's probability of each entry is in its ``order_decided`` audit row (``proba``).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from tradeloop.errors import SessionStateError
from tradeloop.ops.models import AuditEvent, Fill, Order, ThresholdInForce
from tradeloop.ops.overrides import FREEZE, ONLINE, REVERT, UNFREEZE, open_session_row
from tradeloop.ops.store import OpsStore
from tradeloop.thresholds.feedback import Control, TradeFill
from tradeloop.thresholds.online import OnlineConfig

__all__ = [
    "ADAPTED",
    "CONFIG_EVENT",
    "CONTROL_EVENT",
    "FREEZE",
    "ONLINE",
    "UNFREEZE",
    "adaptation_config",
    "controls",
    "entry_probabilities",
    "is_frozen",
    "last_control",
    "latest_revert_id",
    "set_frozen",
    "trade_fills",
]

CONFIG_EVENT = "threshold_adaptation_on"
CONTROL_EVENT = "threshold_adaptation"
ADAPTED = "threshold_adapted"


def adaptation_config(db: Session, session_id: int) -> OnlineConfig | None:
    """The session's adaptation settings; None: it does not adapt."""
    row = db.scalar(
        select(AuditEvent)
        .where(AuditEvent.session_id == session_id, AuditEvent.event == CONFIG_EVENT)
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    return None if row is None else OnlineConfig(**row.detail["config"])


def is_frozen(db: Session, session_id: int) -> bool:
    """True while the session's latest freeze request is ``freeze``."""
    row = db.scalar(
        select(ThresholdInForce.source)
        .where(ThresholdInForce.session_id == session_id, ThresholdInForce.source.in_((FREEZE, UNFREEZE)))
        .order_by(ThresholdInForce.id.desc())
        .limit(1)
    )
    return row == FREEZE


def latest_revert_id(db: Session, session_id: int) -> int:
    """The id of the session's newest ``revert`` row (0: none)."""
    found = db.scalar(
        select(ThresholdInForce.id)
        .where(ThresholdInForce.session_id == session_id, ThresholdInForce.source == REVERT)
        .order_by(ThresholdInForce.id.desc())
        .limit(1)
    )
    return int(found or 0)


def set_frozen(db: Session, session_id: int, *, frozen: bool, reason: str, actor: str) -> ThresholdInForce:
    """Freeze (or unfreeze) the session's adaptation from its next bar, audited. Refused for a
    session that does not adapt, a final one, and a request that changes nothing."""
    row = open_session_row(db, session_id)
    if adaptation_config(db, session_id) is None:
        raise SessionStateError(
            f"session {row.name!r} does not adapt its threshold (made without adapt_thresholds): nothing to "
            f"{'freeze' if frozen else 'unfreeze'}"
        )
    if is_frozen(db, session_id) == frozen:
        raise SessionStateError(f"session {row.name!r}'s adaptation is already {'frozen' if frozen else 'running'}")
    request = ThresholdInForce(
        session_id=session_id, source=FREEZE if frozen else UNFREEZE, threshold=None, reason=reason[:200]
    )
    db.add(request)
    db.flush()
    OpsStore.audit(
        db,
        "threshold_freeze" if frozen else "threshold_unfreeze",
        session_id=session_id,
        actor=actor,
        detail={"reason": reason[:200], "row_id": request.id},
    )
    return request


def controls(db: Session, session_id: int) -> list[Control]:
    """The controls the engine applied, in order (what a replay of the session reads)."""
    rows = db.scalars(
        select(AuditEvent)
        .where(AuditEvent.session_id == session_id, AuditEvent.event == CONTROL_EVENT)
        .order_by(AuditEvent.id)
    )
    return [
        Control(bar_ts=r.detail["bar_ts"], action=r.detail["action"], threshold=r.detail["threshold"]) for r in rows
    ]


def last_control(db: Session, session_id: int) -> dict:
    """The detail of the last control the engine applied ({}: none yet)."""
    row = db.scalar(
        select(AuditEvent)
        .where(AuditEvent.session_id == session_id, AuditEvent.event == CONTROL_EVENT)
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    return {} if row is None else dict(row.detail)


def entry_probabilities(
    db: Session, session_id: int, *, after_order_id: int = 0, artifact: str | None = None
) -> dict[int, float]:
    """Order id -> the model's probability at the entry's decision (orders past ``after_order_id``;
    with ``artifact``, only the entries that model decided: its decision row names it)."""
    rows = db.execute(
        select(AuditEvent.order_id, AuditEvent.detail).where(
            AuditEvent.session_id == session_id,
            AuditEvent.event == "order_decided",
            AuditEvent.order_id > after_order_id,
        )
    )
    return {
        int(o): float(d["proba"])
        for o, d in rows
        if o is not None and d.get("proba") is not None and (artifact is None or d.get("artifact") == artifact)
    }


def trade_fills(db: Session, session_id: int, *, after_id: int = 0) -> list[TradeFill]:
    """The session's fills past ``after_id``, in id order: the champion's book's only (a capital
    slice's fills are a challenger's trades, ``orders.capital_slice``)."""
    rows = db.scalars(
        select(Fill)
        .join(Order, Order.id == Fill.order_id)
        .where(Fill.session_id == session_id, Fill.id > after_id, Order.capital_slice.is_(None))
        .order_by(Fill.id)
    )
    return [
        TradeFill(
            id=f.id,
            order_id=f.order_id,
            symbol=f.symbol,
            side=f.side,
            quantity=f.quantity,
            price=f.price,
            fee=f.fee,
            ts=f.ts,
            after_bar_ts=f.after_bar_ts,
        )  # fmt: skip
        for f in rows
    ]
