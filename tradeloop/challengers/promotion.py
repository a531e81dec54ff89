"""Promotion from live evidence: the sequential test's verdict through the promotion gate's
checks, a recommendation, and an administrator's promotion through the registry.

Rules:

1. **The checks** are the gate's (``tradeloop.research.gate.GateCheck``), on the session's
   paired bars: ``live_min_bars`` (bars >= ``min_bars``), ``live_mean_difference`` (the
   challenger's mean per-bar return above the champion's) and ``live_sequential_test``
   (``log L_n >= log(1/alpha)``, ``tradeloop.challengers.sequential``). All must pass. Only
   the bars paired with the champion in force count.
2. **Recommendation** (:func:`recommend_from_live`, the engine's shadow stage): a challenger in
   shadow whose checks pass becomes ``recommended``, its row holding the decision's numbers,
   with an audit row ``challenger_recommended``. Nothing else changes: the registry's champion
   is global (every session of the strategy trades it), so a trader's paper session never
   switches it by itself. A session that trades in-sample bars (``session.in_sample``) never
   recommends: its evidence is not out of sample. A challenger whose checks fail is left in
   shadow (nothing written).
3. **Promotion** (:func:`promote_from_live`, an administrator through the API) of a
   ``recommended`` challenger only (anything else is refused, ``PromotionRefusedError``) goes
   through ``ModelRegistry.promote`` (the artifact verified and loaded through the allow-list,
   the manifest written atomically) with a ``Lineage`` whose ``evidence`` is ``live``:
   ``parameters`` name the session, the champion it was judged against (it must still be in
   force, else the promotion is refused), the first and last bar, the test's options, who
   promoted it and why; ``metrics`` hold the recommendation's numbers; ``gate`` its checks. The row
   becomes ``promoted`` and an audit row ``challenger_promoted`` names the actor and the
   reason. The engines of the strategy pick the new champion up between bars
   (``live.models``); the old champion is the rollback target.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sqlalchemy import select

from tradeloop.challengers.evidence import ChallengerStore, test_of
from tradeloop.challengers.sequential import SequentialConfig, Standing, standing
from tradeloop.errors import ConfigError, ModelError, NotFoundError, PromotionRefusedError, SessionStateError
from tradeloop.ops import OpsStore, TradingSession
from tradeloop.ops.challenger_models import ChallengerRow
from tradeloop.ops.models import utcnow
from tradeloop.registry import ChampionEntry, Lineage, ModelRegistry, git_commit
from tradeloop.research.gate import GateCheck, GateReport

__all__ = ["LiveVerdict", "live_gate", "promote_from_live", "recommend_from_live"]


@dataclass(frozen=True, kw_only=True, slots=True)
class LiveVerdict:
    """What :func:`recommend_from_live` decided: the checks, and whether it now recommends."""

    artifact: str
    report: GateReport
    test: Standing
    recommended: bool
    why_not: str | None = None  # a session that may not recommend, say (rule 2)


def live_gate(test: Standing, config: SequentialConfig) -> GateReport:
    """The gate's checks on a challenger's live evidence (rule 1)."""
    return GateReport(
        (
            GateCheck(
                "live_min_bars", test.bars, config.min_bars, test.bars >= config.min_bars,
                "paired bars of champion and challenger on the same candles", shown=str(test.bars),
                shown_bar=f">= {config.min_bars}",
            ),
            GateCheck(
                "live_mean_difference", test.mean_diff, 0.0, test.mean_diff > 0,
                f"challenger minus champion, mean per-bar return (HAC se {test.hac_se:.3g})",
                shown_bar="> 0",
            ),
            GateCheck(
                "live_sequential_test", test.log_lr, test.threshold, test.log_lr >= test.threshold,
                f"mSPRT log likelihood ratio on the HAC t-statistic z={test.z:.3f}; false-promotion rate "
                f"<= alpha={config.alpha:g} (effect {config.effect:g} per bar)",
                shown_bar=f">= {test.threshold:.4f}",
            ),
        )
    )  # fmt: skip


def _one(store: OpsStore, session: TradingSession, artifact: str, *, status: str | None) -> ChallengerRow:
    rows = [r for r in ChallengerStore(store).rows(session.id) if r.artifact.startswith(artifact)]
    if len(rows) != 1:
        raise NotFoundError(
            f"{artifact!r} names {len(rows)} challengers of session {session.name!r}; "
            "give a unique prefix of one (GET /sessions/{id}/challengers lists them)"
        )
    if status is not None and rows[0].status != status:
        raise ConfigError(f"challenger {rows[0].artifact[:12]} of session {session.name!r} is {rows[0].status}")
    return rows[0]


def recommend_from_live(
    store: OpsStore,
    session: TradingSession,
    artifact: str,
    *,
    champion: str | None,
    config: SequentialConfig | None = None,
    actor: str = "engine",
) -> LiveVerdict:
    """Judge one challenger in shadow of ``session`` on its live evidence against ``champion``
    (the champion artifact in force) and recommend it when every check passes (rule 2).

    Raises
    ------
    NotFoundError
        ``artifact`` names no challenger of the session, or several.
    ConfigError
        It is not in shadow.
    """
    row = _one(store, session, artifact, status="shadow")
    config = test_of(row, config or SequentialConfig())  # its own options when it was named with them
    bars = ChallengerStore(store).returns_against(session.id, row.artifact, champion)
    test = standing(np.array([b.champion for b in bars]), np.array([b.challenger for b in bars]), config)
    report = live_gate(test, config)
    if not report.passed:
        return LiveVerdict(artifact=row.artifact, report=report, test=test, recommended=False)
    if bool(getattr(session, "in_sample", False)):
        why = "the session trades in-sample bars: its evidence is not out of sample"
        return LiveVerdict(artifact=row.artifact, report=report, test=test, recommended=False, why_not=why)
    numbers = {k: v for k, v in asdict(test).items() if k != "decision"}
    with store.transaction(immediate=True) as db:
        stored = db.scalar(select(ChallengerRow).where(ChallengerRow.id == row.id).with_for_update())
        if stored is None or stored.status != "shadow":  # retired or decided meanwhile
            return LiveVerdict(artifact=row.artifact, report=report, test=test, recommended=False)
        stored.status, stored.decided_at = "recommended", utcnow()
        stored.decision = {
            "evidence": "live", **numbers, "gate": report.as_dicts(), "champion": champion, "first_ts": bars[0].ts,
            "last_ts": bars[-1].ts,
            "alpha": config.alpha, "min_bars": config.min_bars, "effect": config.effect, "lags": config.lags,
        }  # fmt: skip
        OpsStore.audit(
            db, "challenger_recommended", session_id=session.id, actor=actor,
            detail={"artifact": row.artifact, "bars": test.bars, "log_lr": test.log_lr, "threshold": test.threshold},
        )  # fmt: skip
    return LiveVerdict(artifact=row.artifact, report=report, test=test, recommended=True)


def promote_from_live(
    store: OpsStore,
    registry: ModelRegistry,
    session: TradingSession,
    artifact: str,
    *,
    actor: str,
    reason: str,
) -> ChampionEntry:
    """Make a recommended challenger of ``session`` its strategy's champion (rule 3).

    Raises
    ------
    NotFoundError
        ``artifact`` names no challenger of the session, or several.
    PromotionRefusedError
        It is not recommended, the session trades in-sample bars, or the registry refused it
        (the champion in force stays).
    """
    row = _one(store, session, artifact, status=None)
    short = row.artifact[:12]
    if row.status != "recommended" or not row.decision:
        raise PromotionRefusedError(
            f"challenger {short} of session {session.name!r} is {row.status}, not recommended: only a challenger "
            "whose live sequential test decided may be promoted from live evidence (GET "
            "/sessions/{id}/challengers shows its standing); POST /models/{strategy}/promote promotes by hand"
        )
    if bool(getattr(session, "in_sample", False)):
        raise PromotionRefusedError(
            f"session {session.name!r} trades in-sample bars: its evidence cannot promote challenger {short}"
        )
    decision = dict(row.decision)
    current = registry.champion(session.strategy)
    if (current.artifact if current is not None else None) != decision.get("champion"):
        raise PromotionRefusedError(
            f"challenger {short} was recommended against champion {str(decision.get('champion'))[:12]}, and the "
            f"champion of {session.strategy} is now {current.artifact[:12] if current else 'none'}: its evidence "
            "no longer applies; the test starts again against the champion in force"
        )
    keys = ("champion", "first_ts", "last_ts", "alpha", "min_bars", "effect", "lags")
    lineage = Lineage(
        git_commit=git_commit(),
        evidence="live",
        parameters={
            "session": session.name, "session_id": session.id, **{k: decision.get(k) for k in keys},
            "promoted_by": actor, "note": reason,
        },
        metrics={k: v for k, v in decision.items() if k not in (*keys, "gate", "evidence")},
        gate=decision.get("gate", []),
    )  # fmt: skip
    try:
        entry = registry.promote(session.strategy, row.artifact, lineage=lineage)
    except PromotionRefusedError:
        raise
    except ModelError as exc:
        raise PromotionRefusedError(f"challenger {short} was not promoted: {exc}") from None
    with store.transaction(immediate=True) as db:
        stored = db.get(ChallengerRow, row.id, with_for_update=True)
        if stored is None:  # removed while the registry promoted it: the promotion stands, say so
            raise SessionStateError(
                f"challenger {short} was promoted, but its row is gone; its session's challengers no longer list it"
            )
        stored.status, stored.decided_at = "promoted", utcnow()
        OpsStore.audit(
            db, "challenger_promoted", session_id=session.id, actor=actor,
            detail={"artifact": row.artifact, "reason": reason, "bars": decision.get("bars"),
                    "log_lr": decision.get("log_lr")},
        )  # fmt: skip
    return entry
