"""Promotion from live evidence: the sequential test's verdict through the promotion gate's
checks and the registry.

Rules:

1. **The checks** are the gate's (``tradeloop.research.gate.GateCheck``), on the session's
   paired bars: ``live_min_bars`` (bars >= ``min_bars``), ``live_mean_difference`` (the
   challenger's mean per-bar return above the champion's) and ``live_sequential_test``
   (``log L_n >= log(1/alpha)``, ``tradeloop.challengers.sequential``). All must pass.
2. **Promotion** goes through ``ModelRegistry.promote`` (the artifact verified and loaded
   through the allow-list, the manifest written atomically) with a ``Lineage`` whose
   ``evidence`` is ``live``: ``parameters`` name the session, the first and last bar and the
   test's options; ``metrics`` hold the test's numbers; ``gate`` the checks as promoted.
3. **Records**: the challenger's row becomes ``promoted`` with the decision's numbers, and an
   audit row ``challenger_promoted`` says who and why. A challenger whose checks fail is
   left in shadow (nothing written). The engines of the strategy pick the new champion up
   between bars (``live.models``); the old champion is the rollback target.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sqlalchemy import select

from tradeloop.challengers.evidence import ChallengerStore
from tradeloop.challengers.sequential import SequentialConfig, Standing, standing
from tradeloop.errors import ConfigError
from tradeloop.ops import OpsStore, TradingSession
from tradeloop.ops.challenger_models import ChallengerRow
from tradeloop.ops.models import utcnow
from tradeloop.registry import Lineage, ModelRegistry, git_commit
from tradeloop.research.gate import GateCheck, GateReport

__all__ = ["LivePromotion", "live_gate", "promote_from_live"]


@dataclass(frozen=True, kw_only=True, slots=True)
class LivePromotion:
    """What :func:`promote_from_live` decided: the checks, and whether the registry changed."""

    artifact: str
    report: GateReport
    test: Standing
    promoted: bool


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


def promote_from_live(
    store: OpsStore,
    registry: ModelRegistry,
    session: TradingSession,
    artifact: str,
    *,
    config: SequentialConfig | None = None,
    actor: str = "engine",
) -> LivePromotion:
    """Judge one challenger of ``session`` on its live evidence and promote it when every
    check passes (module rules).

    Raises
    ------
    ConfigError
        ``artifact`` is not a challenger of the session in shadow.
    """
    config = config or SequentialConfig()
    evidence = ChallengerStore(store)
    rows = [r for r in evidence.rows(session.id) if r.artifact.startswith(artifact) and r.status == "shadow"]
    if len(rows) != 1:
        raise ConfigError(
            f"{artifact!r} names {len(rows)} challengers in shadow of session {session.name!r}; "
            "give a unique prefix of one (GET /sessions/{id}/challengers lists them)"
        )
    full = rows[0].artifact
    bars = evidence.returns(session.id, full)
    test = standing(np.array([b.champion for b in bars]), np.array([b.challenger for b in bars]), config)
    report = live_gate(test, config)
    if not report.passed:
        return LivePromotion(artifact=full, report=report, test=test, promoted=False)
    numbers = {k: v for k, v in asdict(test).items() if k != "decision"}
    lineage = Lineage(
        git_commit=git_commit(),
        evidence="live",
        parameters={
            "session": session.name, "session_id": session.id, "first_ts": bars[0].ts, "last_ts": bars[-1].ts,
            "alpha": config.alpha, "min_bars": config.min_bars, "effect": config.effect, "lags": config.lags,
        },
        metrics=numbers,
        gate=report.as_dicts(),
    )  # fmt: skip
    registry.promote(session.strategy, full, lineage=lineage)
    with store.transaction(immediate=True) as db:
        row = db.scalar(select(ChallengerRow).where(ChallengerRow.id == rows[0].id))
        assert row is not None
        row.status, row.decided_at = "promoted", utcnow()
        row.decision = {"evidence": "live", **numbers, "gate": report.as_dicts()}
        OpsStore.audit(
            db, "challenger_promoted", session_id=session.id, actor=actor,
            detail={"artifact": full, "bars": test.bars, "log_lr": test.log_lr, "threshold": test.threshold},
        )  # fmt: skip
    return LivePromotion(artifact=full, report=report, test=test, promoted=True)
