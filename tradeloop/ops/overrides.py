"""Threshold overrides: an operator's bar for a session's entries, in force from its next bar.

Rules:

- A request is a ``ThresholdInForce`` row of the session: source ``override`` with the
  threshold asked for, or ``revert`` (threshold None: back to the model's own). It is written
  in one transaction with its audit row (``threshold_override`` / ``threshold_revert``: the
  actor, the old and the new value, the reason). The engine's own rows (source ``model`` or
  ``static``, with the bar they decided from) keep recording what decided, as before.
- The session's latest request decides: an ``override`` row is in force until a later
  ``revert`` (or another ``override``). The live engine reads it every bar
  (``live.models.ModelSlot.refresh``), so it decides with it from its next bar on.
- An override replaces the model's learned threshold (the probability an entry must beat)
  only where the model decides: a stale, in-sample, unfit or missing champion stays
  reduce-only, whatever the override. Exits are never filtered.
- A stopped or finished session takes no request; a revert needs an override in force or an
  adapted threshold (rows ``online``: ``tradeloop.ops.adaptation``) since the last revert: it
  restores the model's own threshold, and the adaptation restarts from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from tradeloop.errors import ConfigError, SessionStateError
from tradeloop.ops.models import ThresholdInForce, TradingSession
from tradeloop.ops.store import OpsStore

OVERRIDE = "override"
REVERT = "revert"
REQUESTS = (OVERRIDE, REVERT)
ONLINE = "online"  # an adjustment of the session's threshold adaptation (tradeloop.ops.adaptation)
FREEZE, UNFREEZE = "freeze", "unfreeze"  # an operator's requests to the adaptation
OPERATOR_REQUESTS = (*REQUESTS, FREEZE, UNFREEZE)  # rows that record a request, not what decided
FINAL_STATUSES = ("stopped", "finished")


@dataclass(frozen=True, kw_only=True, slots=True)
class Override:
    """The override in force for a session."""

    threshold: float
    reason: str
    row_id: int


def latest_request(db: Session, session_id: int) -> ThresholdInForce | None:
    """The session's newest ``override`` or ``revert`` row (None: never overridden)."""
    return db.scalar(
        select(ThresholdInForce)
        .where(ThresholdInForce.session_id == session_id, ThresholdInForce.source.in_(REQUESTS))
        .order_by(ThresholdInForce.id.desc())
        .limit(1)
    )


def override_in_force(db: Session, session_id: int) -> Override | None:
    """The override the session's latest request puts in force, or None (the model's own)."""
    row = latest_request(db, session_id)
    if row is None or row.source != OVERRIDE or row.threshold is None:
        return None
    return Override(threshold=float(row.threshold), reason=row.reason, row_id=row.id)


def current_override(store: OpsStore, session_id: int) -> Override | None:
    """``override_in_force`` in a transaction of its own (what the engine reads each bar)."""
    with store.transaction() as db:
        return override_in_force(db, session_id)


def adapted_since_revert(db: Session, session_id: int) -> ThresholdInForce | None:
    """The newest ``online`` row after the session's last ``revert`` (None: not adapted since)."""
    last = db.scalar(
        select(ThresholdInForce.id)
        .where(ThresholdInForce.session_id == session_id, ThresholdInForce.source == REVERT)
        .order_by(ThresholdInForce.id.desc())
        .limit(1)
    )
    return db.scalar(
        select(ThresholdInForce)
        .where(
            ThresholdInForce.session_id == session_id,
            ThresholdInForce.source == ONLINE,
            ThresholdInForce.id > (last or 0),
        )
        .order_by(ThresholdInForce.id.desc())
        .limit(1)
    )


def open_session_row(db: Session, session_id: int) -> TradingSession:
    row = OpsStore.session_row(db, session_id, for_update=True)  # one request at a time per session
    if row.status in FINAL_STATUSES:
        raise SessionStateError(
            f"session {row.name!r} is {row.status} (final): its threshold can no longer change; start a new session"
        )
    return row


def set_override(
    db: Session, session_id: int, *, threshold: float, reason: str, actor: str, model_threshold: float | None
) -> ThresholdInForce:
    """Put ``threshold`` in force for the session's entries from its next bar, audited.

    ``model_threshold``: the model's own (the champion's learned threshold; None when unknown),
    the old value when no override was in force."""
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold={threshold!r} is not a probability; give a value in [0, 1]")
    open_session_row(db, session_id)
    before = override_in_force(db, session_id)
    row = ThresholdInForce(session_id=session_id, source=OVERRIDE, threshold=threshold, reason=reason[:200])
    db.add(row)
    db.flush()
    OpsStore.audit(
        db,
        "threshold_override",
        session_id=session_id,
        actor=actor,
        detail={
            "old": before.threshold if before else model_threshold,
            "old_source": OVERRIDE if before else "model",
            "new": threshold,
            "reason": reason[:200],
        },
    )
    return row


def revert_override(
    db: Session, session_id: int, *, reason: str, actor: str, model_threshold: float | None
) -> ThresholdInForce:
    """Back to the model's own threshold from the session's next bar, audited; refused when
    neither an override nor an adapted threshold is in force."""
    row = open_session_row(db, session_id)
    before = override_in_force(db, session_id)
    adapted = adapted_since_revert(db, session_id) if before is None else None
    if before is None and adapted is None:
        raise SessionStateError(
            f"session {row.name!r} has no threshold override in force (nor an adapted threshold): it already "
            "decides with its model's own"
        )
    reverted = ThresholdInForce(session_id=session_id, source=REVERT, threshold=None, reason=reason[:200])
    db.add(reverted)
    db.flush()
    OpsStore.audit(
        db,
        "threshold_revert",
        session_id=session_id,
        actor=actor,
        detail={"old": before.threshold, "new": model_threshold, "new_source": "model", "reason": reason[:200]}
        if before is not None
        else {
            "old": adapted.threshold if adapted else None,
            "old_source": ONLINE,
            "new": model_threshold,
            "new_source": "model",
            "reason": reason[:200],
        },
    )
    return reverted
