"""What the dashboard reads: the operational database, the registry, the lake and the
research backtest. Read-only: nothing here writes, and a missing store reads as empty."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import access
import polars as pl
import streamlit as st
from comparison import Run, in_force_periods, ledger, session_backtest, sizing_words, total_equity, warmup_start
from session_data import SessionTables, in_force_schedule, read_session, session_candles
from sqlalchemy import inspect

from tradeloop.backtest import BacktestConfig
from tradeloop.cli.common import fmt_ts
from tradeloop.data import CandleLake
from tradeloop.data.sql import LakeSQL
from tradeloop.errors import ConfigError, TradeloopError
from tradeloop.ops import EquityPoint, OpsStore, TradingSession, connect
from tradeloop.ops.champion_log import RESEARCH_EVENTS, age_words, latest_research_events, research_words
from tradeloop.ops.database import schema_behind
from tradeloop.ops.models import utcnow
from tradeloop.ops.status import arbitrage_terms, is_arbitrage, sample_label, session_status
from tradeloop.redaction import mask_url
from tradeloop.registry import ModelRegistry
from tradeloop.research.steps import EQUITY_PARQUET, METRICS_JSON, TRADES_PARQUET
from tradeloop.settings import Settings, get_settings


def settings() -> Settings:
    return get_settings()


_STORES: dict[str, OpsStore] = {}  # one engine (and connection pool) per URL for every page rerun


def ops_store() -> OpsStore | None:
    """The operational database, read-only: never created nor migrated from here. None
    until a session has created it (asked again on the next rerun)."""
    url = settings().effective_database_url
    if url in _STORES:
        return _STORES[url]
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    store = OpsStore(connect(url))
    if "sessions" not in inspect(store.engine).get_table_names():
        store.close()
        return None
    behind = schema_behind(store.engine)
    if behind is not None:  # the pages' queries would fail on a missing column
        store.close()
        raise ConfigError(
            f"the operational database {mask_url(url)} has schema revision {behind[0]}; this "
            f"dashboard reads {behind[1]}: run `tradeloop live sessions` once (it migrates the "
            "database), then reload the page"
        )
    _STORES[url] = store
    return store


def sessions_frame(store: OpsStore) -> pl.DataFrame:
    """One row per session; ``status`` as ``tradeloop.ops.status`` defines it (running only
    while the engine's heartbeat is fresh, else stale; finished; stopped)."""
    rows = []
    now = utcnow()
    for s in visible_sessions(store):
        equity = store.frame(EquityPoint, s.id).sort("ts")
        last = float(equity["equity"][-1]) if equity.height else s.cash
        beat = s.heartbeat_at.replace(tzinfo=s.heartbeat_at.tzinfo or UTC) if s.heartbeat_at else None
        rows.append(
            {
                "session": s.name,
                "status": session_status(s.status, s.heartbeat_at, now=now),
                "mode": s.mode,
                "sample": sample_label(s.in_sample),
                "strategy": s.strategy,
                "symbols": ", ".join(s.symbols),
                "equity": last,
                "pnl": last - s.init_cash,
                "return": last / s.init_cash - 1.0 if s.init_cash > 0 else None,
                "cash": s.cash,
                "bars": equity.height,
                "last_bar": s.last_bar_ts,
                "heartbeat_s": (now - beat).total_seconds() if beat else None,
            }
        )
    schema = {"last_bar": pl.Int64, "heartbeat_s": pl.Float64}
    frame = pl.DataFrame(rows, schema_overrides=schema)
    return frame.with_columns(last_bar=pl.from_epoch("last_bar", time_unit="ms")) if frame.height else frame


def champion_notes(strategy: str, *, trained_until_ms: int, max_age_ms: int, promoted_at: str | None) -> dict:
    """The champion of ``strategy`` in words: ``age`` (its age and when it goes stale),
    ``stale`` (it is now), ``research`` (the research pipeline's latest audit events: a failed
    or refused retrain, a stale-soon warning; empty when none or no database yet)."""
    now_ms = int(utcnow().timestamp() * 1000)
    research: list[str] = []
    store = ops_store()
    if store is not None:
        rows = [(e.event, e.at, e.detail) for e in store.audit_log(events=RESEARCH_EVENTS)]
        promoted = datetime.fromisoformat(promoted_at) if promoted_at else None
        research = research_words(latest_research_events(rows, strategy), promoted_at=promoted)
    return {
        "age": age_words(trained_until_ms=trained_until_ms, max_age_ms=max_age_ms, now_ms=now_ms),
        "stale": now_ms > trained_until_ms + max_age_ms,
        "research": research,
    }


def session_tables(store: OpsStore, name: str) -> SessionTables:
    return read_session(store, name)


def visible_sessions(store: OpsStore) -> list[TradingSession]:
    """The sessions the reader may see (``access``: all for the operator; with an identity
    provider, the reader's own, an admin's all)."""
    return access.visible_sessions(store.sessions(), access.reader(store))


def session_names(store: OpsStore | None) -> list[str]:
    return [s.name for s in visible_sessions(store)] if store is not None else []


@st.cache_data(ttl=300, show_spinner=False, max_entries=64)
def candles_between(data_dir: str, name: str, start: int, end: int) -> pl.DataFrame:
    """The lake's candles of session ``name``'s symbols, ``start``..``end`` (cached per bar)."""
    store = ops_store()
    return session_candles(lake(), store.session(name), start=start, end=end) if store else pl.DataFrame()


def terms(session: TradingSession) -> str:
    """A session's terms in words: its ``BacktestConfig``'s sizing, or a paper-arbitrage
    session's own (``tradeloop.ops.status``: it stores no backtest config)."""
    if is_arbitrage(session.strategy):
        return arbitrage_terms(session.config or {})
    return sizing_words(BacktestConfig(**session.config))


def live_run(tables: SessionTables) -> Run:
    s = tables.session
    return Run(
        label=f"live: {s.name}",
        kind="live",
        equity=tables.equity.select("ts", "time", "equity"),
        trades=tables.trades,
        init_cash=s.init_cash,
        timeframe=s.timeframe if not is_arbitrage(s.strategy) else bar_timeframe(tables.equity),
        sizing=terms(s),
        note="realised PnL of its pairs over its pre-funded quote asset" if is_arbitrage(s.strategy) else "",
    )


@st.cache_data(ttl=600, show_spinner="Backtesting the session's bars on its own terms...", max_entries=32)
def _backtest_frames(
    data_dir: str, name: str, schedule: tuple[tuple[int, str | None], ...], start: int, end: int
) -> tuple[pl.DataFrame, ...]:
    """``schedule``: (first bar, artifact or None for the reduce-only fallback) in time order."""
    store = ops_store()
    session = store.session(name)
    periods = in_force_periods(schedule, lambda artifact: registry().model_of(artifact, strategy=session.strategy))
    candles = session_candles(lake(), session, start=warmup_start(start, session.timeframe), end=end, before_bars=0)
    if candles.is_empty():
        return ()
    equity, trades = session_backtest(
        candles, periods, BacktestConfig(**session.config), start=start, end=end, timeframe=session.timeframe
    )
    trained = [p.model.trained_until for p in periods if p.model is not None]
    return equity, trades, pl.DataFrame({"trained_until": trained}, schema={"trained_until": pl.Int64})


def backtest_run(tables: SessionTables) -> Run | str:
    """The session's bars backtested on its terms with the models in force at each bar (see
    ``comparison``), or why there is none."""
    s = tables.session
    if is_arbitrage(s.strategy):
        return "a paper-arbitrage session trades quotes across venues, not a model's bars"
    if not tables.equity.height:
        return "the session has not processed a bar yet"
    start, end = int(tables.equity["ts"][0]), int(tables.equity["ts"][-1])
    schedule = in_force_schedule(ops_store(), s.id)
    if schedule is None:  # recorded before the engine kept bars: the champion throughout, said so
        entry = registry().champion(s.strategy)
        if entry is None:
            return f"no champion of {s.strategy} in the registry to backtest"
        schedule, note = (
            ((start, entry.artifact),),
            f"champion {entry.artifact[:12]} throughout (the session's record of its models predates bar times)",
        )
    else:
        models = list(dict.fromkeys(a[:12] if a else "fallback" for _, a in schedule))
        note = f"the models in force at each bar, as live: {', '.join(models)}"
    try:
        frames = _backtest_frames(str(settings().data_dir), s.name, schedule, start, end)
    except TradeloopError as exc:  # an artifact that does not load: the champion page says why too
        return f"a model of the session cannot be backtested: {exc}"
    if not frames:
        return f"the lake holds no candles of {', '.join(s.symbols)} ({s.exchange}, {s.timeframe}) for this period"
    equity, trades, trained = frames
    late = [t for t in trained["trained_until"].to_list() if t >= start]
    if late and len(schedule) == 1:
        note += f" (IN-SAMPLE: trained on bars until {fmt_ts(max(late))} UTC)"
    return Run(
        label="backtest, same terms",
        kind="backtest",
        equity=equity,
        trades=trades,
        init_cash=s.init_cash,
        timeframe=s.timeframe,
        sizing=terms(s),
        note=note,
    )


def bar_timeframe(equity: pl.DataFrame) -> str:
    """The bar length of an equity curve as a timeframe (``"240m"``): its shortest step."""
    steps = equity["ts"].diff().drop_nulls()
    steps = steps.filter(steps > 0)
    return f"{max(int(steps.min()) // 60_000, 1)}m" if steps.len() else "1d"


def research_backtest() -> Run | None:
    """The research pipeline's stored full-history backtest (display: in-sample for its model)."""
    folder = settings().research_dir / "backtest"
    if not (folder / EQUITY_PARQUET).exists():
        return None
    metrics = json.loads((folder / METRICS_JSON).read_text())
    config = metrics.get("config")
    terms = sizing_words(BacktestConfig(**config)) if isinstance(config, dict) else "sizing not recorded"
    equity = total_equity(pl.read_parquet(folder / EQUITY_PARQUET))
    init_cash = (
        float(config["init_cash"])
        if isinstance(config, dict) and "init_cash" in config
        else float(BacktestConfig().init_cash)
    )
    timeframe = str(metrics.get("timeframe") or bar_timeframe(equity))
    return Run(
        label="research backtest",
        kind="research",
        equity=equity,
        trades=ledger(pl.read_parquet(folder / TRADES_PARQUET)),
        init_cash=init_cash,
        timeframe=timeframe,
        sizing=terms,
        note="the model's own training history: in-sample, display only",
    )


def registry() -> ModelRegistry:
    return ModelRegistry(settings().registry_dir)


def lake() -> CandleLake:
    return CandleLake(settings().lake_dir, quarantine_root=settings().quarantine_dir)


GAP_SCHEMA = {"series": pl.String, "from": pl.Datetime("ms"), "to": pl.Datetime("ms"), "missing": pl.Int64}


def data_health() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Coverage of every series and its gaps (first and last missing bar), from the lake's
    DuckDB views (as ``tradeloop data status``)."""
    rows, gaps = [], []
    lk = lake()
    with LakeSQL(lk, now_ms=lk.clock(), strict=False) as sql:
        statuses = sql.status()
    for key, status in statuses.items():
        rows.append(
            {
                "series": key.label,
                "exchange": key.exchange,
                "symbol": key.symbol,
                "timeframe": key.timeframe,
                "candles": status.rows,
                "first": status.first_ts,
                "last": status.last_ts,
                "gaps": len(status.gaps),
                "missing": status.missing,
                "coverage": status.coverage,
                "invalid": sum(status.invalid.values()),
                "damaged_files": len(status.unreadable),
            }
        )
        gaps += [{"series": key.label, "from": g.start, "to": g.end, "missing": g.missing} for g in status.gaps]
    frame = pl.DataFrame(rows)
    if frame.height:
        frame = frame.with_columns(pl.from_epoch("first", time_unit="ms"), pl.from_epoch("last", time_unit="ms"))
    holes = pl.DataFrame(gaps, schema={"series": pl.String, "from": pl.Int64, "to": pl.Int64, "missing": pl.Int64})
    holes = holes.with_columns(pl.from_epoch("from", time_unit="ms"), pl.from_epoch("to", time_unit="ms"))
    return frame, holes.cast(GAP_SCHEMA).sort("missing", descending=True)
