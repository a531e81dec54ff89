"""What the dashboard reads: the operational database, the registry, the lake and the
research backtest. Read-only: nothing here writes, and a missing store reads as empty."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import polars as pl
from sqlalchemy import inspect

from tradeloop.backtest.engine import periods_per_year
from tradeloop.data import CandleLake
from tradeloop.data.sql import LakeSQL
from tradeloop.errors import ConfigError
from tradeloop.ops import EquityPoint, Fill, OpsStore, Order, Position, connect
from tradeloop.ops.champion_log import RESEARCH_EVENTS, age_words, latest_research_events, research_words
from tradeloop.ops.database import schema_behind
from tradeloop.ops.models import utcnow
from tradeloop.ops.status import sample_label, session_status
from tradeloop.performance import compute_metrics
from tradeloop.redaction import mask_url
from tradeloop.registry import ModelRegistry
from tradeloop.research.steps import EQUITY_PARQUET, METRICS_JSON, TRADES_PARQUET
from tradeloop.settings import Settings, get_settings

METRICS = ("total_return", "cagr", "sharpe", "sortino", "calmar", "max_drawdown", "volatility", "trades",
           "win_rate", "profit_factor")


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
        raise ConfigError(f"the operational database {mask_url(url)} has schema revision {behind[0]}; this "
                          f"dashboard reads {behind[1]}: run `tradeloop live sessions` once (it migrates the "
                          "database), then reload the page")
    _STORES[url] = store
    return store


def sessions_frame(store: OpsStore) -> pl.DataFrame:
    """One row per session; ``status`` as ``tradeloop.ops.status`` defines it (running only
    while the engine's heartbeat is fresh, else stale; finished; stopped)."""
    rows = []
    now = utcnow()
    for s in store.sessions():
        equity = store.frame(EquityPoint, s.id).sort("ts")
        last = float(equity["equity"][-1]) if equity.height else s.cash
        rows.append({"session": s.name, "status": session_status(s.status, s.heartbeat_at, now=now), "mode": s.mode,
                     "sample": sample_label(s.in_sample), "strategy": s.strategy,
                     "symbols": ", ".join(s.symbols), "equity": last, "pnl": last - s.init_cash,
                     "return": last / s.init_cash - 1.0, "cash": s.cash, "bars": equity.height})
    return pl.DataFrame(rows)


def in_sample_sessions(store: OpsStore) -> list[str]:
    """Names of the sessions marked in-sample (they trade bars their champion was trained on)."""
    return [s.name for s in store.sessions() if s.in_sample]


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
    return {"age": age_words(trained_until_ms=trained_until_ms, max_age_ms=max_age_ms, now_ms=now_ms),
            "stale": now_ms > trained_until_ms + max_age_ms, "research": research}


def session_tables(store: OpsStore, name: str) -> dict[str, pl.DataFrame]:
    s = store.session(name)
    equity = store.frame(EquityPoint, s.id).sort("ts").with_columns(time=pl.from_epoch("ts", time_unit="ms"))
    return {
        "equity": equity,
        "positions": store.frame(Position, s.id).filter(pl.col("quantity") > 0),
        "orders": store.frame(Order, s.id).sort("id", descending=True),
        "open_orders": store.frame(Order, s.id).filter(pl.col("status").is_in(["new", "submitted", "unknown"])),
        "fills": store.frame(Fill, s.id).sort("id", descending=True).with_columns(
            time=pl.from_epoch("ts", time_unit="ms")),
    }


def research_backtest() -> dict | None:
    folder = settings().research_dir / "backtest"
    if not (folder / EQUITY_PARQUET).exists():
        return None
    equity = (pl.read_parquet(folder / EQUITY_PARQUET).group_by("ts", maintain_order=True)
              .agg(pl.col("equity").sum()).sort("ts").with_columns(time=pl.from_epoch("ts", time_unit="ms")))
    return {"equity": equity, "trades": pl.read_parquet(folder / TRADES_PARQUET),
            "metrics": json.loads((folder / METRICS_JSON).read_text())}


def with_drawdown(equity: pl.DataFrame) -> pl.DataFrame:
    return equity.with_columns(drawdown=pl.col("equity") / pl.col("equity").cum_max() - 1.0)


def metrics_row(label: str, equity: pl.DataFrame, *, init_cash: float, timeframe: str,
                trades: pl.DataFrame | None = None) -> dict:
    report = compute_metrics(equity["equity"].to_numpy(), init_cash=init_cash,
                             periods_per_year=periods_per_year(timeframe), trades=trades).as_dict()
    return {"run": label, **{k: (None if isinstance(report[k], float) and math.isnan(report[k]) else report[k])
                             for k in METRICS}}


def registry() -> ModelRegistry:
    return ModelRegistry(settings().registry_dir)


def lake() -> CandleLake:
    return CandleLake(settings().lake_dir, quarantine_root=settings().quarantine_dir)


def data_health() -> pl.DataFrame:
    """Coverage of every series, from the lake's DuckDB views (as ``tradeloop data status``)."""
    rows = []
    lk = lake()
    with LakeSQL(lk, now_ms=lk.clock(), strict=False) as sql:
        statuses = sql.status()
    for key, st in statuses.items():
        rows.append({"series": key.label, "candles": st.rows,
                     "first": st.first_ts, "last": st.last_ts, "gaps": len(st.gaps), "missing": st.missing,
                     "coverage": st.coverage, "invalid": sum(st.invalid.values()),
                     "damaged_files": len(st.unreadable)})
    frame = pl.DataFrame(rows)
    if frame.height:
        frame = frame.with_columns(pl.from_epoch("first", time_unit="ms"), pl.from_epoch("last", time_unit="ms"))
    return frame
