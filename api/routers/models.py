"""Models: the registry's champions with their lineage and history; promotion and rollback.

Everything goes through ``tradeloop.registry.ModelRegistry`` over ``settings.registry_dir``,
as ``tradeloop models`` does: a promotion verifies the artifact's hash, loads its model the
safe way and checks its strategy before the manifest changes, and a refusal (a tampered
artifact, another strategy's model, no earlier champion to roll back to) is a 409 problem
carrying the registry's reason; the previous champion stays in force. A running engine picks
up the new champion at its next bar. Lineage numbers that are not finite are given as null.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from api.context import ApiContext
from api.deps import Admin, Context, Viewer
from tradeloop.errors import ConfigError, ModelError, NotFoundError, PromotionRefusedError, TradeloopError
from tradeloop.ops.champion_log import RESEARCH_EVENTS, age_words, latest_research_events
from tradeloop.registry import ChampionEntry, Lineage, ModelRegistry
from tradeloop.strategies import STRATEGIES

router = APIRouter(prefix="/models", tags=["models"])

StrategyName = Annotated[
    str,
    Path(min_length=1, max_length=64, description="a strategy's name (GET /models lists them)", examples=["sma_cross"]),
]


class LineageOut(BaseModel):
    git_commit: str = Field(description="the commit the model was trained at ('-dirty': with local changes)")
    data_snapshot: str = Field(description="sha256 over the candle files it was trained on")
    notebook: str | None = None
    parameters: dict[str, Any] = Field(description="the research run's parameters (a manual promotion: its note)")
    run_id: str | None = Field(default=None, description="the Dagster run id")
    metrics: dict[str, Any] = Field(description="out-of-sample metrics at promotion")
    gate: list[dict[str, Any]] = Field(description="the promotion gate's checks: name, value, bar, passed, detail")
    created_at: str


class ChampionOut(BaseModel):
    strategy: str = Field(examples=["sma_cross"])
    artifact: str = Field(description="the artifact's id: sha256 of its files (64 hex digits)")
    promoted_at: str = Field(description="ISO 8601, UTC")
    lineage: LineageOut


class ArtifactOut(BaseModel):
    id: str = Field(description="artifact id (give it, or a unique prefix of 6+ hex digits, to promote it)")
    trained_until: int | None = Field(default=None, description="ms: the last bar whose label the model saw")
    universe: dict[str, Any] | None = Field(
        default=None, description="exchange, timeframe and symbols it was trained on"
    )
    in_force: bool = Field(default=False, description="the strategy's champion now")
    error: str | None = Field(default=None, description="why its model.json could not be read")


class StrategyModels(BaseModel):
    strategy: str
    champion: ChampionOut | None = Field(default=None, description="None: no champion promoted yet")
    rollback_to: str | None = Field(default=None, description="the artifact a rollback would put back in force")
    artifacts: list[ArtifactOut] = Field(description="stored artifacts holding a model of this strategy")
    error: str | None = Field(default=None, description="why its champion manifest could not be read")


class ModelsOut(BaseModel):
    strategies: list[StrategyModels]
    unreadable: list[ArtifactOut] = Field(description="stored artifacts whose model.json does not parse")


class ThresholdModelOut(BaseModel):
    strategy: dict[str, Any] = Field(description="the strategy and its parameters")
    threshold: float = Field(description="the learned threshold an entry's probability must beat")
    p_star: float = Field(description="the break-even probability")
    margin: float
    trained_from: int | None = Field(default=None, description="ms: its first training event, when recorded")
    trained_until: int = Field(description="ms: the last bar whose label it saw")
    max_age_ms: int
    on_stale: str = Field(description="reduce_only or break_even, once older than max_age_ms")
    features: list[str]
    universe: dict[str, Any] | None = None
    data_hash: str | None = None
    retrain_policy: dict[str, Any] | None = None


class HistoryOut(BaseModel):
    event: str = Field(examples=["promote"])
    artifact: str
    at: str


class ResearchOut(BaseModel):
    event: str = Field(description="retrain_failed, retrain_refused or champion_stale_soon")
    at: str
    reason: str
    run_id: str | None = None
    stale_at_ms: int | None = None
    words: str


class StrategyDetail(BaseModel):
    strategy: str
    champion: ChampionOut | None = None
    model: ThresholdModelOut | None = Field(default=None, description="the champion's model (hash verified)")
    model_error: str | None = Field(default=None, description="why the champion's model does not load")
    age: str | None = Field(default=None, description="its age and when it goes stale, in words")
    rollback_stack: list[ChampionOut] = Field(description="earlier champions, the next rollback first")
    history: list[HistoryOut] = Field(description="every promotion and rollback, newest first")
    research: list[ResearchOut] = Field(description="the research pipeline's latest events for it, newest first")
    error: str | None = Field(default=None, description="why its manifest or history could not be read")


class PromoteIn(BaseModel):
    artifact: str = Field(
        pattern=r"^[0-9a-f]{6,64}$", description="artifact id or a unique prefix (6+ lower-case hex digits)",
        examples=["3f1c2a9b0d4e"],
    )  # fmt: skip
    reason: str = Field(min_length=3, max_length=200, examples=["the retrain was refused on a data glitch"])


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, infinities) as None: JSON has none."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def _champion(entry: ChampionEntry) -> ChampionOut:
    lineage = LineageOut.model_validate(finite(entry.lineage.model_dump(mode="json")))
    return ChampionOut(strategy=entry.strategy, artifact=entry.artifact, promoted_at=entry.promoted_at, lineage=lineage)


def _registry(ctx: ApiContext) -> ModelRegistry:
    return ModelRegistry(ctx.settings.registry_dir)


def _known(registry: ModelRegistry, strategy: str) -> None:
    if strategy not in STRATEGIES and strategy not in registry.strategies():
        raise NotFoundError(
            f"strategy {strategy!r} does not exist; the strategies are {', '.join(sorted(STRATEGIES))} (GET /models)"
        )


def _artifacts(registry: ModelRegistry) -> tuple[dict[str, list[ArtifactOut]], list[ArtifactOut]]:
    """Stored artifacts by the strategy their model.json names, and the unreadable ones."""
    by_strategy: dict[str, list[ArtifactOut]] = {}
    unreadable = []
    for artifact in registry.store.list():
        try:
            doc = registry.describe(artifact)
        except TradeloopError as exc:
            unreadable.append(ArtifactOut(id=artifact, error=str(exc)))
            continue
        universe = doc.universe.model_dump(mode="json") if doc.universe is not None else None
        out = ArtifactOut(id=artifact, trained_until=doc.trained_until, universe=universe)
        by_strategy.setdefault(doc.strategy.name, []).append(out)
    return by_strategy, unreadable


@router.get("", response_model=ModelsOut, summary="Every strategy with its champion and its stored artifacts")
def list_models(principal: Viewer, ctx: Context) -> ModelsOut:
    registry = _registry(ctx)
    by_strategy, unreadable = _artifacts(registry)
    out = []
    for name in sorted(set(STRATEGIES) | set(registry.strategies())):
        artifacts = by_strategy.get(name, [])
        try:
            manifest = registry.manifest(name)
        except TradeloopError as exc:  # one broken manifest must not hide the others
            out.append(StrategyModels(strategy=name, artifacts=artifacts, error=str(exc)))
            continue
        current = manifest.current
        for artifact in artifacts:
            artifact.in_force = current is not None and artifact.id == current.artifact
        out.append(
            StrategyModels(
                strategy=name,
                champion=_champion(current) if current else None,
                rollback_to=manifest.previous[-1].artifact if manifest.previous else None,
                artifacts=artifacts,
            )
        )
    return ModelsOut(strategies=out, unreadable=unreadable)


def _model_out(model, *, data_snapshot: str) -> ThresholdModelOut:
    """The loaded champion's figures (what ``tradeloop models show --json`` prints, as numbers)."""
    est, info = model.estimator, model.info or {}
    first = info.get("trained_from")
    policy = info.get("retrain_policy")
    data_hash = info.get("data_hash") or (data_snapshot if data_snapshot not in ("", "unknown") else None)
    return ThresholdModelOut(
        strategy=finite(model.strategy.model_dump(mode="json")) | {"name": model.strategy.name},
        threshold=est.threshold_, p_star=est.p_star_, margin=est.margin_,
        trained_from=int(first) if isinstance(first, int | float) and not isinstance(first, bool) else None,
        trained_until=model.trained_until, max_age_ms=model.max_age_ms, on_stale=model.on_stale,
        features=list(model.features), universe=model.universe.model_dump(mode="json") if model.universe else None,
        data_hash=str(data_hash) if data_hash else None,
        retrain_policy=finite(policy) if isinstance(policy, dict) else None,
    )  # fmt: skip


@router.get(
    "/{strategy}",
    response_model=StrategyDetail,
    summary="A strategy's champion: its model, lineage, age, rollback stack, history and research events",
)
def show_model(strategy: StrategyName, principal: Viewer, ctx: Context) -> StrategyDetail:
    registry = _registry(ctx)
    _known(registry, strategy)
    try:
        manifest, history = registry.manifest(strategy), registry.history(strategy)
    except ModelError as exc:  # said, not raised: the research events below still help
        manifest, history = None, []
        detail = StrategyDetail(strategy=strategy, rollback_stack=[], history=[], research=[], error=str(exc))
    if manifest is not None:
        detail = StrategyDetail(
            strategy=strategy,
            champion=_champion(manifest.current) if manifest.current else None,
            rollback_stack=[_champion(e) for e in reversed(manifest.previous)],
            history=[HistoryOut(**e) for e in reversed(history)],
            research=[],
        )
    if manifest is not None and manifest.current is not None:
        try:
            model = registry.model_of(manifest.current.artifact, strategy=strategy)
        except ModelError as exc:
            detail.model_error = str(exc)
        else:
            detail.model = _model_out(model, data_snapshot=manifest.current.lineage.data_snapshot)
            now_ms = int(ctx.now().timestamp() * 1000)
            detail.age = age_words(trained_until_ms=model.trained_until, max_age_ms=model.max_age_ms, now_ms=now_ms)
    rows = [(e.event, e.at, e.detail) for e in ctx.store.audit_log(events=RESEARCH_EVENTS)]
    detail.research = [
        ResearchOut(
            event=e.event, at=e.at.isoformat(), reason=e.reason, run_id=e.run_id, stale_at_ms=e.stale_at_ms,
            words=e.words(),
        )
        for e in latest_research_events(rows, strategy)
    ]  # fmt: skip
    return detail


@router.post(
    "/{strategy}/promote",
    response_model=ChampionOut,
    summary="Make a stored artifact the strategy's champion (verified first; the reason is kept in its lineage)",
    responses={409: {"description": "the registry refused it: the previous champion stays in force"}},
)
def promote(strategy: StrategyName, body: PromoteIn, principal: Admin, ctx: Context) -> ChampionOut:
    registry = _registry(ctx)
    _known(registry, strategy)
    matches = [d for d in registry.store.list() if d.startswith(body.artifact)]
    if not matches:
        raise NotFoundError(f"artifact {body.artifact!r} is not stored; GET /models lists the stored artifacts")
    if len(matches) > 1:
        raise ConfigError(
            f"body.artifact={body.artifact!r} matches {len(matches)} stored artifacts; give more of its id"
        )
    lineage = Lineage(parameters={"note": body.reason, "promoted_by": principal.actor})
    try:
        entry = registry.promote(strategy, matches[0], lineage=lineage)
    except ModelError as exc:
        raise PromotionRefusedError(
            f"artifact {matches[0][:12]} was not promoted as champion of {strategy}: {exc}"
        ) from None
    return _champion(entry)


@router.post(
    "/{strategy}/rollback",
    response_model=ChampionOut,
    summary="Put the strategy's previous champion back in force (verified first)",
    responses={409: {"description": "no earlier champion, or it no longer verifies"}},
)
def rollback(strategy: StrategyName, principal: Admin, ctx: Context) -> ChampionOut:
    registry = _registry(ctx)
    _known(registry, strategy)
    try:
        entry = registry.rollback(strategy)
    except ModelError as exc:
        raise PromotionRefusedError(f"{strategy} was not rolled back: {exc}") from None
    return _champion(entry)
