"""Champion and challengers, live: a session's challengers in shadow and where each stands.

``GET /sessions/{id}/challengers`` lists every challenger the session names, with the live
sequential test on its paired per-bar returns against the champion
(``tradeloop.challengers``: the mean difference, its HAC standard error, the t-statistic, the
mixture likelihood ratio and the bar it must reach). ``POST`` names one more: a registered
artifact of the session's strategy (an id or a unique prefix), run by the session's engine in
shadow from its next bar (``live.shadow``), audited ``challenger_added``. When the test
decides, the engine marks the challenger ``recommended`` (audited ``challenger_recommended``)
and changes nothing else: the champion is global to the strategy, so only an administrator
promotes, with ``POST /sessions/{id}/challengers/{artifact}/promote`` and a reason (lineage
``evidence: live``); anything not recommended is refused (409).

A challenger named with ``capital_share`` (a paper session's, in (0, 0.5], the session's
shares together at most 0.5) trades a real slice of the session's capital instead of a
simulation (``live.slices``): ``slice_state``, ``slice_cash`` and ``slice_ts`` say whether and
when it was funded, and its evidence is both books' real returns. Retiring or promoting it
closes its slice: its positions are flattened and its cash goes back to the champion's book.
"""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from api.context import ApiContext
from api.deps import Admin, Context, Trader, Viewer
from api.timequery import SessionId, owned_session
from tradeloop.challengers import SequentialConfig
from tradeloop.challengers.evidence import ChallengerStanding, ChallengerStore
from tradeloop.challengers.promotion import promote_from_live
from tradeloop.errors import TradeloopError
from tradeloop.registry import ModelRegistry

router = APIRouter(prefix="/sessions", tags=["challengers"])


class ChallengerOut(BaseModel):
    artifact: str = Field(description="the challenger's artifact id", examples=["3f1c2a9b0d4e" + "0" * 52])
    status: str = Field(
        description="shadow (evidence accruing), recommended (the live test decided; an admin may promote it), "
        "promoted, retired"
    )
    capital_share: float | None = Field(
        default=None, description="its share of the capital in an A/B split; None: shadow only"
    )
    slice_state: str | None = Field(
        default=None,
        description="its capital slice: waiting (named, not funded yet: the audit's slice_waiting says why), open "
        "(trading), closing (being flattened), closed (its cash back with the champion); None: not funded (shadow "
        "only, or not seen by the engine yet)",
    )
    slice_cash: float | None = Field(default=None, description="the cash its slice was funded with")
    slice_ts: int | None = Field(default=None, description="the bar its slice was funded at (open time, ms)")
    bars: int = Field(description="paired bars recorded against the champion in force")
    first_ts: int | None = Field(default=None, description="its first paired bar (open time, ms)")
    last_ts: int | None = Field(default=None, description="its last paired bar (open time, ms)")
    shadow_equity: float | None = Field(
        default=None, description="its equity at the last bar: simulated, or its capital slice's real one"
    )
    champion_mean: float = Field(description="the champion's mean per-bar return over the same bars")
    challenger_mean: float = Field(description="the challenger's mean per-bar return")
    mean_difference: float = Field(description="challenger minus champion, per bar")
    hac_se: float | None = Field(default=None, description="Newey-West standard error of the mean difference")
    z: float | None = Field(default=None, description="the HAC t-statistic")
    log_lr: float | None = Field(default=None, description="the test's statistic: log of the mixture likelihood ratio")
    threshold: float = Field(description="log(1/alpha): the statistic promotes at or above it")
    decision: str = Field(description="collecting (before min_bars), continue, or promote", examples=["continue"])
    alpha: float = Field(description="the false-promotion rate its test stays within (its own, or the default)")
    min_bars: int = Field(description="paired bars its test needs before a promotion (its own, or the default)")


class ChallengersOut(BaseModel):
    champion: str | None = Field(default=None, description="the strategy's champion artifact now; None: none")
    alpha: float = Field(description="the default false-promotion rate (a challenger may be named with its own)")
    min_bars: int = Field(description="the default paired bars needed before a promotion")
    items: list[ChallengerOut] = Field(description="in the order they were named")


class ChallengerIn(BaseModel):
    artifact: str = Field(
        min_length=6, max_length=64, pattern="^[0-9a-f]+$", description="a registered artifact id or unique prefix"
    )
    test: SequentialConfig | None = Field(
        default=None,
        description="its own sequential-test options (alpha, min_bars, effect, lags), fixed once named; "
        "omitted: the defaults",
        examples=[{"alpha": 0.01, "min_bars": 500}],
    )
    capital_share: float | None = Field(
        default=None,
        gt=0,
        le=0.5,
        description="trade a real slice of this share of the session's capital (0.2: an 80/20 A/B split): paper, "
        "or live on one spot venue; omitted: shadow only",
        examples=[0.2],
    )


class PromoteChallengerIn(BaseModel):
    reason: str = Field(min_length=3, max_length=200, examples=["recommended on 400 bars of live evidence"])


ArtifactPrefix = Annotated[
    str,
    Path(
        min_length=6, max_length=64, pattern="^[0-9a-f]+$", description="the challenger's artifact id or unique prefix",
        examples=["3f1c2a9b0d4e"],
    ),
]  # fmt: skip


def _champion(ctx: ApiContext, strategy: str) -> str | None:
    """The strategy's champion artifact in force (None: none, or the registry is unreadable)."""
    try:
        entry = ModelRegistry(ctx.settings.registry_dir).champion(strategy)
    except TradeloopError:
        return None
    return entry.artifact if entry is not None else None


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _out(s: ChallengerStanding) -> ChallengerOut:
    t = s.test
    return ChallengerOut(
        artifact=s.artifact, status=s.status, capital_share=s.capital_share, slice_state=s.slice_state,
        slice_cash=s.slice_cash, slice_ts=s.slice_ts, bars=t.bars, first_ts=s.first_ts,
        last_ts=s.last_ts, shadow_equity=s.equity, champion_mean=t.champion_mean, challenger_mean=t.challenger_mean,
        mean_difference=t.mean_diff, hac_se=_finite(t.hac_se), z=_finite(t.z), log_lr=_finite(t.log_lr),
        threshold=t.threshold, decision=t.decision, alpha=s.config.alpha, min_bars=s.config.min_bars,
    )  # fmt: skip


@router.get(
    "/{session_id}/challengers",
    response_model=ChallengersOut,
    summary="The session's challengers against its champion, with the live sequential test's standing",
)
def list_challengers(session_id: SessionId, principal: Viewer, ctx: Context) -> ChallengersOut:
    session = owned_session(ctx, principal, session_id)
    config = SequentialConfig()
    champion = _champion(ctx, session.strategy)
    return ChallengersOut(
        champion=champion,
        alpha=config.alpha,
        min_bars=config.min_bars,
        items=[_out(s) for s in ChallengerStore(ctx.store).standings(session_id, champion=champion, config=config)],
    )


@router.post(
    "/{session_id}/challengers",
    response_model=ChallengerOut,
    status_code=201,
    summary="Run a registered model of the session's strategy in shadow beside its champion (audited)",
)
def add_challenger(session_id: SessionId, body: ChallengerIn, principal: Trader, ctx: Context) -> ChallengerOut:
    session = owned_session(ctx, principal, session_id)
    evidence = ChallengerStore(ctx.store)
    full = evidence.add(
        session, body.artifact, registry=ModelRegistry(ctx.settings.registry_dir), test=body.test,
        capital_share=body.capital_share, actor=principal.actor,
    )  # fmt: skip
    champion = _champion(ctx, session.strategy)
    return next(_out(s) for s in evidence.standings(session_id, champion=champion) if s.artifact == full)


@router.post(
    "/{session_id}/challengers/{artifact}/promote",
    response_model=ChallengerOut,
    summary="Promote a recommended challenger to its strategy's champion, for every session (admins; audited)",
    responses={409: {"description": "the challenger is not recommended, or the registry refused it"}},
)
def promote_challenger(
    session_id: SessionId, artifact: ArtifactPrefix, body: PromoteChallengerIn, principal: Admin, ctx: Context
) -> ChallengerOut:
    session = owned_session(ctx, principal, session_id)
    registry = ModelRegistry(ctx.settings.registry_dir)
    before = _champion(ctx, session.strategy)  # its standing against the champion it replaced
    entry = promote_from_live(ctx.store, registry, session, artifact, actor=principal.actor, reason=body.reason)
    standings = ChallengerStore(ctx.store).standings(session_id, champion=before)
    return next(_out(s) for s in standings if s.artifact == entry.artifact)
