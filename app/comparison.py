"""Live against backtest on equal terms: the runs the performance page compares.

* ``live``: what the session did (its equity marks and its fills as round trips).
* ``backtest, same terms``: the champion deciding the session's own bars from the lake, each
  bar at its own time (as the engine decides it, ``now_ms="bar"``), simulated with the
  session's ``BacktestConfig`` (its initial cash, sizing, fees, slippage) from the session's
  first bar; the bars before that only warm the features up. Same model, same data, same
  sizing: the difference is execution (fills, outages, model swaps), which is what an
  operator wants to see. The live engine's parity test holds them equal on a replay.
* ``research backtest``: the research pipeline's full-history backtest under its own sizing,
  cut to the live period (rebased to its equity at the start) when asked.

Every run carries its sizing in words, so a table never compares unlike terms silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from tradeloop.backtest import BacktestConfig, run_backtest
from tradeloop.backtest.engine import periods_per_year
from tradeloop.data import timeframe_ms
from tradeloop.performance import compute_metrics
from tradeloop.performance import format as fmt
from tradeloop.thresholds import ThresholdModel
from tradeloop.thresholds.decide import decide

WARMUP_BARS = 400  # the live engine's default window: features see as much history as live
METRICS = ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "volatility", "calmar", "trades",
           "open_trades", "win_rate", "profit_factor")
SHORT_SAMPLE_DAYS = 30  # below this, annualised figures (CAGR, Sharpe, volatility) mean little
LEDGER_SCHEMA = {"symbol": pl.String, "entry_time": pl.Datetime("ms"), "exit_time": pl.Datetime("ms"),
                 "quantity": pl.Float64, "entry_price": pl.Float64, "exit_price": pl.Float64, "fees": pl.Float64,
                 "pnl": pl.Float64, "return": pl.Float64, "is_open": pl.Boolean}


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
        return Run(label=self.label, kind=self.kind, equity=equity, trades=trades, init_cash=capital,
                   timeframe=self.timeframe, sizing=self.sizing, note=self.note)


def sizing_words(config: BacktestConfig) -> str:
    """``BacktestConfig``'s sizing and costs as one line a reader can compare."""
    if config.sizing == "vol_target":
        size = f"volatility target {config.vol_target:.0%}/year, capped at {config.fraction:.0%} of equity"
    else:
        size = f"{config.fraction:.0%} of equity per new position"
    cash = "shared cash" if config.cash_sharing else "cash per symbol"
    stops = [f"{name} {value:.1%}" for name, value in (("stop", config.stop_loss), ("target", config.take_profit),
                                                        ("trailing", config.trailing_stop)) if value]
    return (f"{size}, {cash}, fee {config.fee_rate:.2%}/side, slippage {config.slippage:.2%}, "
            f"capital {config.init_cash:,.0f}" + (f", {', '.join(stops)}" if stops else ""))


def ledger(trades: pl.DataFrame) -> pl.DataFrame:
    """A backtest trade ledger (``entry_ts`` ...) in the dashboard's shape, times as dates."""
    if not trades.height:
        return pl.DataFrame(schema=LEDGER_SCHEMA)
    return trades.select(
        "symbol", entry_time=pl.from_epoch("entry_ts", time_unit="ms"),
        exit_time=pl.when(~pl.col("is_open")).then(pl.from_epoch("exit_ts", time_unit="ms")),
        quantity="qty", entry_price="entry_price", exit_price=pl.when(~pl.col("is_open")).then("exit_price"),
        fees="fees", pnl="pnl", **{"return": "return"}, is_open="is_open",
    ).cast(LEDGER_SCHEMA)


def total_equity(equity: pl.DataFrame) -> pl.DataFrame:
    """One equity row per bar (a backtest without shared cash has one per symbol): ts, time, equity."""
    return (equity.group_by("ts", maintain_order=True).agg(pl.col("equity").sum()).sort("ts")
            .with_columns(time=pl.from_epoch("ts", time_unit="ms")))


def session_backtest(candles: pl.DataFrame, model: ThresholdModel, config: BacktestConfig, *, start: int,
                     end: int, timeframe: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The champion's backtest of the bars ``start``..``end`` on ``config``'s terms: (equity per
    bar, ledger). ``candles``: the session's symbols, from ``WARMUP_BARS`` bars before ``start``."""
    frame = candles.filter(pl.col("ts") <= end).sort("symbol", "ts")
    decided = decide(frame, model, now_ms="bar").with_columns(
        signal=pl.when(pl.col("ts") >= start).then(pl.col("signal")).otherwise(pl.lit(0, dtype=pl.Int8)))
    result = run_backtest(decided, config, timeframe=timeframe)
    return total_equity(result.equity).filter(pl.col("ts") >= start), ledger(result.trades)


def warmup_start(start: int, timeframe: str) -> int:
    return start - WARMUP_BARS * timeframe_ms(timeframe)


def metrics_row(run: Run) -> dict:
    """The run's metrics (NaN as None), with its period in days; the annualised ones are None
    under ``SHORT_SAMPLE_DAYS`` (``annualised`` False then)."""
    equity = run.equity["equity"].to_numpy()
    report = compute_metrics(equity, init_cash=run.init_cash, periods_per_year=periods_per_year(run.timeframe),
                             trades=run.trades.select("pnl", "return", "is_open")).as_dict()
    days = run.equity.height * timeframe_ms(run.timeframe) / 86_400_000
    row = {"run": run.label, "from": run.equity["ts"].min(), "to": run.equity["ts"].max(), "days": days,
           "annualised": days >= SHORT_SAMPLE_DAYS}
    for key in METRICS:
        value = report[key]
        row[key] = None if isinstance(value, float) and math.isnan(value) else value
    if not row["annualised"]:  # an annualised figure of a few days is noise, not a rate
        row.update({key: None for key in ANNUALISED})
    return row


ANNUALISED = ("cagr", "sharpe", "sortino", "volatility", "calmar")
LABELS = {"from": "from (UTC)", "to": "to (UTC)", "days": "period", "total_return": "total return",
          "cagr": "CAGR", "sharpe": "Sharpe", "sortino": "Sortino", "max_drawdown": "max drawdown",
          "volatility": "volatility (annual)", "calmar": "Calmar", "trades": "trades",
          "open_trades": "of which open at the end", "win_rate": "win rate (closed)", "profit_factor": "profit factor"}


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
