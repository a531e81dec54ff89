"""The continuous loop, replayed: the live engine trades a period of the lake while the model
is refit at the retrain policy's times, exactly as the scheduled retrain would refit it.

At every retrain time ``r`` of the period the champion's parameters are refit on the candles
closed before ``r`` (``events_known_at``: labels closed before ``r`` minus the embargo, inside
the training window), registered and promoted; then the engine trades the bars up to the
next retrain time. A refit with too few events to learn from is a failed retrain: nothing is
promoted and the champion in force keeps ageing, so the engine's staleness rule applies.
This is the walk-forward's simulation (``tradeloop.research.walkforward.policy_schedule``)
run through the real engine, the registry and the operational database; the test of their
equality is what makes the gate's evidence equal live behaviour. ``make demo`` uses it to
replay the months the research never saw.

    python -m pipelines.replay --name demo --strategy sma_cross --start 2025-07-01
"""

import argparse
import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from live.engine import LiveEngine
from live.runner import SessionConfig, run_session
from tradeloop.cli.common import console, fmt_ts, parse_time
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.schema import timeframe_ms
from tradeloop.errors import ConfigError, TradeloopError
from tradeloop.ops import EquityPoint, OpsStore
from tradeloop.registry import Lineage, ModelRegistry, git_commit
from tradeloop.research.model_choice import model_options
from tradeloop.research.policy import RetrainPolicy
from tradeloop.research.steps import build_params
from tradeloop.research.walkforward import refit_at
from tradeloop.settings import Settings, get_settings
from tradeloop.thresholds import ThresholdModel, Universe, meta_dataset

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ReplayStep:
    at: int  # the retrain time (ms)
    artifact: str | None  # promoted now; None: the retrain failed, the champion in force stays
    bars: int  # bars the engine traded until the next retrain time


def refit_known(
    candles: pl.DataFrame,
    params: dict,
    *,
    at: int,
    policy: RetrainPolicy,
    embargo_ms: int,
    bar_ms: int,
    cost: float,
    estimator_params: dict | None = None,
) -> ThresholdModel:
    """The refit a retrain at ``at`` makes: only candles closed before ``at`` are read; the
    classifier and features are the ones ``params`` records (``model_options``) unless
    ``estimator_params`` says otherwise."""
    strategy, barriers = build_params(params, cost=cost)
    recorded, features = model_options(params)
    events = meta_dataset(candles.filter(pl.col("ts") < at), strategy, barriers=barriers, features=features)
    return refit_at(
        events,
        strategy,
        barriers,
        at=at,
        policy=policy,
        embargo_ms=embargo_ms,
        bar_ms=bar_ms,
        estimator_params=estimator_params if estimator_params is not None else recorded,
        features=features,
    )


async def replay_with_retrains(
    settings: Settings,
    session: SessionConfig,
    *,
    params: dict,
    policy: RetrainPolicy,
    start: int,
    end: int,
    embargo_bars: int,
    cost: float,
    estimator_params: dict | None = None,
    keep_champion_at_start: bool = False,
    on_step: Callable[[ReplayStep, int, int], None] | None = None,
) -> tuple[LiveEngine | None, list[ReplayStep]]:
    """Trade [start, end] of the lake with the refit of the last retrain time at or before
    ``start`` and one at every retrain time inside the period. ``on_step(step, done, total)``
    is told after each segment (progress).

    ``keep_champion_at_start``: the champion in force already is the refit at ``start`` (the
    research pipeline trained it on the same data): do not refit it again."""
    lake = CandleLake(settings.lake_dir, quarantine_root=settings.quarantine_dir)
    candles = lake.read_many([SeriesKey(session.exchange, s, session.timeframe) for s in session.symbols])
    candles = candles.select("symbol", "ts", "open", "high", "low", "close", "volume").sort("symbol", "ts")
    registry = ModelRegistry(settings.registry_dir)
    bar_ms = timeframe_ms(session.timeframe)
    times = [policy.last_retrain_time(start), *policy.retrain_times(start, end).tolist()]  # as policy_schedule
    engine, steps = None, []
    for k, at in enumerate(times):
        artifact = None
        if not (k == 0 and keep_champion_at_start and registry.champion(session.strategy) is not None):
            model = refit_known(
                candles,
                params,
                at=at,
                policy=policy,
                embargo_ms=embargo_bars * bar_ms,
                bar_ms=bar_ms,
                cost=cost,
                estimator_params=estimator_params,
            )
            if not model.estimator.fallback_:
                model.universe = Universe(
                    exchange=session.exchange, timeframe=session.timeframe, symbols=tuple(sorted(session.symbols))
                )
                path = settings.data_dir / "replay-models" / f"{session.name}-{at}"
                artifact = registry.register(model.save(path))
                registry.promote(
                    session.strategy,
                    artifact,
                    lineage=Lineage(
                        run_id=f"replay:{session.name}",
                        parameters=params,
                        notebook="pipelines/replay.py",
                        git_commit=git_commit(REPO),
                    ),
                )
        until = times[k + 1] - 1 if k + 1 < len(times) else end
        segment = session.model_copy(update={"start": start, "end": until})
        engine = await run_session(settings, segment)
        steps.append(ReplayStep(at=at, artifact=artifact, bars=engine.bars))
        if on_step:
            on_step(steps[-1], k + 1, len(times))
    return engine, steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Replay the lake through the live engine with the champion "
        "refit at the retrain policy's times (see the module doc)."
    )
    parser.add_argument("--name", default="demo")
    parser.add_argument("--strategy", default="sma_cross")
    parser.add_argument(
        "--start", help="first bar (ISO date); default: the first bar after the champion's training end"
    )
    parser.add_argument("--end", help="last bar (ISO date); default: the lake's last candle")
    parser.add_argument(
        "--skip-without-champion",
        action="store_true",
        help="exit 0, saying so, when the gate promoted no champion (make demo)",
    )
    parser.add_argument(
        "--fraction", type=float, help="share of equity per position (default: the one the champion was evaluated with)"
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    try:
        registry = ModelRegistry(settings.registry_dir)
        entry = registry.champion(args.strategy)
        if entry is None and args.skip_without_champion:
            console.print(
                f"no champion of {args.strategy}: the promotion gate refused the candidate (its checks "
                "are printed above), so there is nothing to trade out of sample; no session replayed"
            )
            return 0
        if entry is None:
            raise ConfigError(
                f"no champion of {args.strategy}: run the research pipeline first (python -m pipelines.run)"
            )
        model = registry.model_of(entry.artifact, strategy=args.strategy)
        universe = model.universe
        if universe is None:
            raise ConfigError(f"champion {entry.artifact[:12]} records no universe; retrain it")
        bar_ms = timeframe_ms(universe.timeframe)
        start = parse_time(args.start, field="--start") if args.start else model.trained_until + bar_ms
        lake = CandleLake(settings.lake_dir, quarantine_root=settings.quarantine_dir)
        last = min(lake.last_ts(SeriesKey(universe.exchange, s, universe.timeframe)) or 0 for s in universe.symbols)
        end = parse_time(args.end, field="--end") if args.end else last
        policy = RetrainPolicy.model_validate(model.info.get("retrain_policy") or {})
        session = SessionConfig(
            name=args.name,
            strategy=args.strategy,
            exchange=universe.exchange,
            symbols=universe.symbols,
            timeframe=universe.timeframe,
            fraction=args.fraction or float(model.info.get("fraction", 0.5)),
            start=start,
            end=end,
        )
        embargo = int(model.info.get("embargo_bars", 0))
        keep = start == model.trained_until + bar_ms

        def progress(step: ReplayStep, done: int, total: int) -> None:
            refit = (
                "the champion"
                if keep and done == 1
                else (f"refit {step.artifact[:12]}" if step.artifact else "no refit (too few events: the model ages)")
            )
            console.print(
                f"replay: segment {done}/{total} from the retrain at {fmt_ts(step.at)} ({refit}): {step.bars} bar(s)",
                highlight=False,
            )

        engine, steps = asyncio.run(
            replay_with_retrains(
                settings,
                session,
                params=dict(entry.lineage.parameters),
                policy=policy,
                start=start,
                end=end,
                embargo_bars=embargo,
                cost=model.barriers.cost,
                keep_champion_at_start=keep,
                on_step=progress,
            )
        )
    except TradeloopError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    refits = sum(s.artifact is not None for s in steps)
    bars = sum(s.bars for s in steps)
    store = OpsStore.open(settings.effective_database_url)
    equity = store.frame(EquityPoint, store.session(session.name).id).sort("ts")["equity"]
    final = float(equity[-1]) if len(equity) else engine.cash
    console.print(
        f"replayed {bars} bar(s) of {session.name!r} with {refits} refit(s) of the champion's parameters "
        f"({policy.describe()}); equity {session.init_cash:,.2f} -> {final:,.2f} "
        f"({final / session.init_cash - 1:+.2%})",
        highlight=False,
    )
    # what the session saw is out of sample: its first bar comes after the training end
    console.print(
        f"in-sample share: 0.0% (first bar {fmt_ts(start)}, the champion was trained until "
        f"{fmt_ts(model.trained_until)})"
        if start > model.trained_until
        else f"in-sample: the replay starts at {fmt_ts(start)}, before the training end",
        highlight=False,
    )
    fallbacks = [t.reason for t in store.thresholds(store.session(session.name).id) if t.source == "static"]
    store.close()
    console.print(
        "entries decided by the champion on every bar (no static fallback)"
        if not fallbacks
        else f"static fallback (reduce-only) at times: {'; '.join(fallbacks)}",
        highlight=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
