"""Live against backtest on equal terms: the runs the performance page compares.

* ``live``: what the session did (its equity marks and its fills as round trips).
* ``backtest, same terms``: the session's own bars from the lake, each decided by the model
  (or the reduce-only fallback) that was in force at that bar in the session (its
  ``thresholds`` rows, by bar), at the bar's own time as the engine decides it
  (``now_ms="bar"``), simulated with the session's ``BacktestConfig`` (its initial cash,
  sizing, fees, slippage) from the session's first bar; the bars before that only warm the
  features up. Same models, same data, same sizing: the difference is execution (fills,
  outages), which is what an operator wants to see. The live engine's parity test holds them
  equal on a replay. Rows recorded before the engine kept the bar fall back to the champion
  throughout, and say so.
* ``research backtest``: the research pipeline's full-history backtest under its own sizing,
  cut to the live period (rebased to its equity at the start) when asked.

Every run carries its sizing in words, so a table never compares unlike terms silently.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from tradeloop.backtest import BacktestConfig, run_backtest
from tradeloop.backtest.engine import periods_per_year
from tradeloop.data import timeframe_ms
from tradeloop.performance import compute_metrics
from tradeloop.performance import format as fmt
from tradeloop.strategies import Strategy
from tradeloop.strategies.signals import ENTRIES
from tradeloop.thresholds import ThresholdModel
from tradeloop.thresholds.decide import decide

WARMUP_BARS = 400  # the live engine's default window: features see as much history as live
METRICS = (
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "max_drawdown",
    "volatility",
    "calmar",
    "trades",
    "open_trades",
    "win_rate",
    "profit_factor",
)
SHORT_SAMPLE_DAYS = 30  # below this, annualised figures (CAGR, Sharpe, volatility) mean little
LEDGER_SCHEMA = {
    "symbol": pl.String,
    "entry_time": pl.Datetime("ms"),
    "exit_time": pl.Datetime("ms"),
    "quantity": pl.Float64,
    "entry_price": pl.Float64,
    "exit_price": pl.Float64,
    "fees": pl.Float64,
    "pnl": pl.Float64,
    "return": pl.Float64,
    "is_open": pl.Boolean,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Run:
    label: str
    kind: str  # live | backtest | research
    equity: pl.DataFrame  # ts, time, equity (one row per bar)
    trades: pl.DataFrame  # LEDGER_SCHEMA
    init_cash: float  # the capital the returns are measured from
    timeframe: str
    sizing: str  # the terms, in words
    note: str = ""

    def within(self, start: int, end: int) -> Run:
        """This run cut to bars ``start``..``end`` (ms, inclusive), measured from its equity just
        before ``start``; trades entered in the window."""
        before = self.equity.filter(pl.col("ts") < start)
        equity = self.equity.filter(pl.col("ts").is_between(start, end))
        capital = float(before["equity"][-1]) if before.height else self.init_cash
        lo, hi = (pl.from_epoch(pl.lit(v), time_unit="ms").cast(pl.Datetime("ms")) for v in (start, end))
        trades = self.trades.filter(pl.col("entry_time").is_between(lo, hi))
        return Run(
            label=self.label,
            kind=self.kind,
            equity=equity,
            trades=trades,
            init_cash=capital,
            timeframe=self.timeframe,
            sizing=self.sizing,
            note=self.note,
        )


def sizing_words(config: BacktestConfig) -> str:
    """``BacktestConfig``'s sizing and costs as one line a reader can compare."""
    if config.sizing == "vol_target":
        size = f"volatility target {config.vol_target:.0%}/year, capped at {config.fraction:.0%} of equity"
    else:
        size = f"{config.fraction:.0%} of equity per new position"
    cash = "shared cash" if config.cash_sharing else "cash per symbol"
    stops = [
        f"{name} {value:.1%}"
        for name, value in (
            ("stop", config.stop_loss),
            ("target", config.take_profit),
            ("trailing", config.trailing_stop),
        )
        if value
    ]
    return (
        f"{size}, {cash}, fee {config.fee_rate:.2%}/side, slippage {config.slippage:.2%}, "
        f"capital {config.init_cash:,.0f}" + (f", {', '.join(stops)}" if stops else "")
    )


def ledger(trades: pl.DataFrame) -> pl.DataFrame:
    """A backtest trade ledger (``entry_ts`` ...) in the dashboard's shape, times as dates."""
    if not trades.height:
        return pl.DataFrame(schema=LEDGER_SCHEMA)
    return trades.select(
        "symbol",
        entry_time=pl.from_epoch("entry_ts", time_unit="ms"),
        exit_time=pl.when(~pl.col("is_open")).then(pl.from_epoch("exit_ts", time_unit="ms")),
        quantity="qty",
        entry_price="entry_price",
        exit_price=pl.when(~pl.col("is_open")).then("exit_price"),
        fees="fees",
        pnl="pnl",
        **{"return": "return"},
        is_open="is_open",
    ).cast(LEDGER_SCHEMA)


def total_equity(equity: pl.DataFrame) -> pl.DataFrame:
    """One equity row per bar (a backtest without shared cash has one per symbol): ts, time, equity."""
    return (
        equity.group_by("ts", maintain_order=True)
        .agg(pl.col("equity").sum())
        .sort("ts")
        .with_columns(time=pl.from_epoch("ts", time_unit="ms"))
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class InForce:
    """What decided entries from the bar ``from_ts`` on: a model, or (``model`` None) the
    reduce-only fallback, which exits with ``strategy``'s rule and never enters."""

    from_ts: int
    model: ThresholdModel | None
    strategy: Strategy | None = None


def in_force_periods(
    schedule: tuple[tuple[int, str | None], ...], load: Callable[[str], ThresholdModel]
) -> list[InForce]:
    """``schedule`` ((first bar, artifact or None), as ``session_data.in_force_schedule``) with
    each artifact loaded by ``load``; a fallback period exits with the last model's rule."""
    periods, strategy = [], None
    for from_ts, artifact in schedule:
        model = load(artifact) if artifact else None
        strategy = model.strategy if model is not None else strategy
        periods.append(InForce(from_ts=from_ts, model=model, strategy=strategy))
    return periods


def session_backtest(
    candles: pl.DataFrame,
    schedule: ThresholdModel | list[InForce],
    config: BacktestConfig,
    *,
    start: int,
    end: int,
    timeframe: str,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The backtest of the bars ``start``..``end`` on ``config``'s terms, each bar decided by what
    was in force at it (``schedule``, in time order; one model: that model throughout), at its
    own time as the engine decides it: (equity per bar, ledger). ``candles``: the session's
    symbols, from ``WARMUP_BARS`` bars before ``start``."""
    schedule = [InForce(from_ts=start, model=schedule)] if isinstance(schedule, ThresholdModel) else schedule
    frame = candles.filter(pl.col("ts") <= end).sort("symbol", "ts")
    parts = []
    for k, period in enumerate(schedule):
        lo, hi = max(period.from_ts, start), (schedule[k + 1].from_ts if k + 1 < len(schedule) else end + 1)
        if lo >= hi:
            continue
        if period.model is not None:
            decided = decide(frame, period.model, now_ms="bar")
        elif period.strategy is not None:  # reduce-only: the rule's exits, never an entry
            decided = period.strategy.signals(frame, by="symbol").with_columns(
                pl.col("signal") & pl.lit(~ENTRIES, dtype=pl.Int8)
            )
        else:
            continue  # no model ever in force: nothing entered, nothing held to exit
        parts.append(decided.filter(pl.col("ts").is_between(lo, hi - 1)).select("symbol", "ts", "signal"))
    signals = (
        pl.concat(parts) if parts else pl.DataFrame(schema={"symbol": pl.String, "ts": pl.Int64, "signal": pl.Int8})
    )
    frame = (
        frame.drop("signal", strict=False)
        .join(signals, on=["symbol", "ts"], how="left")
        .with_columns(pl.col("signal").fill_null(0).cast(pl.Int8))
        .sort("symbol", "ts")
    )
    result = run_backtest(frame, config, timeframe=timeframe)
    return total_equity(result.equity).filter(pl.col("ts") >= start), ledger(result.trades)


def warmup_start(start: int, timeframe: str) -> int:
    return start - WARMUP_BARS * timeframe_ms(timeframe)


def metrics_row(run: Run) -> dict:
    """The run's metrics (NaN as None), with its period in days; the annualised ones are None
    under ``SHORT_SAMPLE_DAYS`` (``annualised`` False then)."""
    equity = run.equity["equity"].to_numpy()
    report = compute_metrics(
        equity,
        init_cash=run.init_cash,
        periods_per_year=periods_per_year(run.timeframe),
        trades=run.trades.select("pnl", "return", "is_open"),
    ).as_dict()
    days = run.equity.height * timeframe_ms(run.timeframe) / 86_400_000
    row = {
        "run": run.label,
        "from": run.equity["ts"].min(),
        "to": run.equity["ts"].max(),
        "days": days,
        "annualised": days >= SHORT_SAMPLE_DAYS,
    }
    for key in METRICS:
        value = report[key]
        row[key] = None if isinstance(value, float) and math.isnan(value) else value
    if not row["annualised"]:  # an annualised figure of a few days is noise, not a rate
        row.update({key: None for key in ANNUALISED})
    return row


ANNUALISED = ("cagr", "sharpe", "sortino", "volatility", "calmar")
LABELS = {
    "from": "from (UTC)",
    "to": "to (UTC)",
    "days": "period",
    "total_return": "total return",
    "cagr": "CAGR",
    "sharpe": "Sharpe",
    "sortino": "Sortino",
    "max_drawdown": "max drawdown",
    "volatility": "volatility (annual)",
    "calmar": "Calmar",
    "trades": "trades",
    "open_trades": "of which open at the end",
    "win_rate": "win rate (closed)",
    "profit_factor": "profit factor",
}


def _text(key: str, row: dict) -> str:
    value = row[key]
    if key in ANNUALISED and not row["annualised"]:
        return fmt.short_sample(row["days"], SHORT_SAMPLE_DAYS)
    if key in ("from", "to"):
        return fmt.when(value)
    if key == "days":
        return fmt.days(value)
    if key in ("total_return", "cagr", "max_drawdown", "volatility", "win_rate"):
        return fmt.pct(value)
    if key in ("trades", "open_trades"):
        return fmt.count(value)
    return fmt.ratio(value)


def metrics_table(rows: list[dict]) -> pl.DataFrame:
    """Metrics down, runs across (as a tearsheet reads), every figure as text: percentages,
    dates, and ``n/a`` with the reason for an annualised figure of a short run."""
    data = {"metric": list(LABELS.values())}
    for row in rows:
        data[row["run"]] = [_text(key, row) for key in LABELS]
    return pl.DataFrame(data)
