"""Parameter sweeps: many parameter sets x many symbols in one call, one compiled parallel pass.

``sweep(strategy, params, candles, config, timeframe=...)`` runs every (parameter set, symbol)
combination as its own portfolio (``config.init_cash`` on one symbol; ``cash_sharing`` does
not apply) over that symbol's own candles, and returns one row of metrics per combination.
Each combination equals ``backtest_strategy`` of the same parameters on that symbol's candles
alone: the same signals, the same kernel (``tradeloop.backtest.sweep_kernel`` calls
``tradeloop.backtest.kernel.simulate``), the same trades and equity.

What is computed once:

* **Indicator columns**, once per distinct window and symbol: each SMA window of ``sma_cross``
  once (``sweep_kernel.rolling_means``; the score fast / slow - 1 is formed in the kernel),
  the whole score of a one-parameter strategy (``momentum``, ``mean_reversion``,
  ``breakout``) once per distinct parameter value, by the strategy's own polars expression.
  Symbols go in chunks so that the table stays under ``INDICATOR_BYTES``.
* **ATR** (ATR stops) and **position sizes** (``vol_target``, ``correlation``) once per symbol,
  by the functions ``run_backtest`` uses.

The rule (``ThresholdRule``) is applied inside the kernel, so ``rule`` may be swept too.
Equity curves are kept only with ``equity_curves=True`` (an ``equity`` list column, one value
per candle of the combination's symbol, in time order).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import polars as pl
from pydantic import ValidationError

from tradeloop.backtest import sweep_kernel
from tradeloop.backtest.atr import wilder_atr
from tradeloop.backtest.config import BacktestConfig
from tradeloop.backtest.engine import periods_per_year, size_fractions
from tradeloop.backtest.prices import PriceArrays
from tradeloop.errors import BacktestError, ConfigError, config_error
from tradeloop.strategies import STRATEGIES, Breakout, MeanReversion, Momentum, SmaCross, Strategy

__all__ = ["INDICATOR_BYTES", "SWEEPABLE", "parameter_sets", "sweep"]

INDICATOR_BYTES = 256 * 2**20  # the most the indicator table of one chunk of symbols may hold

Column = tuple[Hashable, int | pl.Expr]  # a distinct indicator column: its key, an SMA window or a polars expression
Params = Mapping[str, Iterable[Any]] | Sequence[Mapping[str, Any]]


def _sma_ratio(strategy: Strategy) -> tuple[Column, Column | None]:
    """sma_cross: score = SMA(fast) / SMA(slow) - 1 (``SmaCross.score_expr``), one column per window."""
    strategy = cast(SmaCross, strategy)
    return (("sma", strategy.fast), strategy.fast), (("sma", strategy.slow), strategy.slow)


def _whole_score(strategy: Strategy) -> tuple[Column, Column | None]:
    """One-parameter strategies: the score itself, one column per distinct parameter value."""
    key = (strategy.name, tuple(sorted(strategy.model_dump(exclude={"rule"}).items())))
    return (key, strategy.score_expr()), None


# the strategies a sweep runs: a threshold rule on a score built from precomputed indicator columns
SWEEPABLE: dict[type[Strategy], Callable[[Strategy], tuple[Column, Column | None]]] = {
    SmaCross: _sma_ratio,
    Momentum: _whole_score,
    MeanReversion: _whole_score,
    Breakout: _whole_score,
}


def sweep(
    strategy: str | type[Strategy] | Strategy,
    params: Params,
    candles: pl.DataFrame,
    config: BacktestConfig,
    *,
    timeframe: str,
    equity_curves: bool = False,
) -> pl.DataFrame:
    """Backtest every parameter set on every symbol; one row of metrics per combination.

    Parameters
    ----------
    strategy
        A strategy name (``"sma_cross"``), class or instance; an instance gives the values of
        the parameters the sweep does not set (e.g. its ``rule``).
    params
        A grid, ``{"fast": [5, 10], "slow": [30, 50]}`` (every combination, each must be
        valid), or a list of parameter dicts, ``[{"fast": 5, "slow": 30}, ...]``.
    candles
        ``ts, symbol, open, high, low, close`` rows (no ``symbol``: one series); one
        portfolio per symbol, over that symbol's own candles.
    config
        Fills, fees, sizing and stops, as for ``backtest_strategy`` (no risk engine).
    timeframe
        The candles' timeframe, e.g. ``"1m"`` (Sharpe's annualisation, vol-target sizing).
    equity_curves
        Also return each combination's equity curve as an ``equity`` list column.

    Returns
    -------
    polars.DataFrame
        In parameter-set then symbol order: the strategy's parameters (a swept ``rule`` as
        ``rule_entry``, ``rule_exit``, ``rule_allow_short``), ``symbol``, ``trades`` (open ones
        included), ``final_equity``, ``total_return``, ``sharpe`` and ``max_drawdown``
        (negative), as ``tradeloop.performance.metrics`` defines them.

    Raises
    ------
    ConfigError
        For an unknown strategy name, an empty or malformed ``params``, a parameter set the
        strategy refuses, a bad ``config``, ``timeframe`` or ``equity_curves``.
    BacktestError
        For a strategy the sweep cannot run, or candles without the needed columns.
    """
    base = _base_strategy(strategy)
    sets = parameter_sets(params)
    grid = isinstance(params, Mapping)
    strategies = [_validated(base, values, i, grid=grid) for i, values in enumerate(sets)]
    if not isinstance(config, BacktestConfig):
        raise ConfigError(f"config={config!r} is not a BacktestConfig; build one, e.g. BacktestConfig(fee_rate=0.001)")
    if not isinstance(equity_curves, bool):
        raise ConfigError(f"equity_curves={equity_curves!r} must be True or False")
    ppy = periods_per_year(timeframe)
    frame = _sorted_candles(candles)
    symbols, start = _symbol_rows(frame)
    columns, first, second = _columns(strategies)
    stats, curves = _run(frame, symbols, start, strategies, columns, first, second, config, timeframe, equity_curves)
    return _result(strategies, sets, symbols, start, stats, curves, config, ppy)


# ------------------------------------------------------------------------------------------------ inputs
def parameter_sets(params: Params) -> list[dict[str, Any]]:
    """The parameter sets of a grid (every combination, in the grid's order) or of a list of dicts."""
    if isinstance(params, Mapping):
        if not params:
            raise ConfigError(
                "params={}: the grid is empty; give each swept parameter a list of values, "
                "e.g. {'fast': [5, 10], 'slow': [30, 50]}"
            )
        values = []
        for name, options in params.items():
            if isinstance(options, str | bytes | Mapping) or not isinstance(options, Iterable):
                raise ConfigError(
                    f"params[{name!r}]={options!r} is not a list of values; a grid takes lists, "
                    f"e.g. {{{name!r}: [{options!r}]}}"
                )
            listed = [_plain(v) for v in options]
            if not listed:
                raise ConfigError(f"params[{name!r}]=[] has no values; give it at least one, or leave it out")
            values.append(listed)
        return [dict(zip(params, combo, strict=True)) for combo in itertools.product(*values)]
    if isinstance(params, str | bytes) or not isinstance(params, Sequence):
        raise ConfigError(
            f"params={params!r} is neither a grid nor a list of parameter sets; pass "
            "{'fast': [5, 10], 'slow': [30, 50]} or [{'fast': 5, 'slow': 30}, ...]"
        )
    if not params:
        raise ConfigError("params=[]: no parameter sets; pass at least one, e.g. [{'fast': 10, 'slow': 30}]")
    sets = []
    for i, one in enumerate(params):
        if not isinstance(one, Mapping):
            raise ConfigError(f"params[{i}]={one!r} is not a dict of parameters; write it as {{'fast': 10, ...}}")
        sets.append({str(k): _plain(v) for k, v in one.items()})
    return sets


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value  # numpy scalars validate as Python ones


def _base_strategy(strategy: str | type[Strategy] | Strategy) -> Strategy | type[Strategy]:
    if isinstance(strategy, str):
        cls = STRATEGIES.get(strategy)
        if cls is None:
            raise ConfigError(f"strategy={strategy!r} is unknown; choose one of {', '.join(sorted(STRATEGIES))}")
        found: Strategy | type[Strategy] = cls
    elif isinstance(strategy, Strategy) or (isinstance(strategy, type) and issubclass(strategy, Strategy)):
        found = strategy
    else:
        raise ConfigError(
            f"strategy={strategy!r} is not a strategy; pass a name such as 'sma_cross', a Strategy class or instance"
        )
    cls = found if isinstance(found, type) else type(found)
    if cls not in SWEEPABLE:
        supported = ", ".join(sorted(c.name for c in SWEEPABLE))
        name = getattr(cls, "name", cls.__qualname__)
        raise BacktestError(
            f"sweep cannot run strategy {name!r} ({cls.__qualname__}): a sweep computes the score from "
            f"precomputed indicator windows and applies the threshold rule itself, which it knows how to do "
            f"for {supported}; run backtest_strategy once per parameter set for {name!r}"
        )
    return found


def _validated(base: Strategy | type[Strategy], values: dict[str, Any], index: int, *, grid: bool) -> Strategy:
    cls = base if isinstance(base, type) else type(base)
    defaults = {} if isinstance(base, type) else {name: getattr(base, name) for name in type(base).model_fields}
    try:
        return cls.model_validate({**defaults, **values})
    except ValidationError as exc:
        hint = " (a grid runs every combination: pass a list of parameter dicts to run only valid ones)"
        error = config_error(exc, what=f"sweep of {cls.name}, parameter set {index} {values}", model=cls)
        raise ConfigError(str(error) + (hint if grid else "")) from None


def _sorted_candles(candles: pl.DataFrame) -> pl.DataFrame:
    if not isinstance(candles, pl.DataFrame):
        raise ConfigError(f"candles={type(candles).__name__} is not a polars DataFrame; pass pl.DataFrame candles")
    frame = candles if "symbol" in candles.columns else candles.with_columns(symbol=pl.lit("SYMBOL"))
    missing = sorted({"ts", "open", "high", "low", "close"} - set(frame.columns))
    if missing:
        raise BacktestError(f"sweep candles lack column(s) {missing}; pass ts, symbol, open, high, low, close rows")
    if frame.height == 0:
        raise BacktestError("sweep candles are empty; pass at least one candle per symbol")
    if frame.select(pl.struct("symbol", "ts").is_duplicated().any()).item():
        raise BacktestError("sweep candles have two candles for one (symbol, ts); deduplicate them")
    prices = ("open", "high", "low", "close")
    try:
        frame = frame.select("symbol", "ts", *(pl.col(c).cast(pl.Float64) for c in prices))
    except pl.exceptions.PolarsError as exc:
        raise BacktestError(f"sweep candles have a price that is not a number ({exc}); pass numeric OHLC") from None
    for column, broken, fix in (
        ("symbol", pl.col("symbol").is_null(), "give every candle its symbol"),
        ("ts", pl.col("ts").is_null(), "give every candle its open time (epoch ms)"),
        ("close", pl.col("close").is_null() | pl.col("close").is_nan(), "drop those rows (a missing candle is a "
         "missing row)"),
        *((c, ~pl.col(c).is_finite() | (pl.col(c) <= 0), "prices are finite and above 0: drop or repair those rows")
          for c in prices),
    ):  # fmt: skip
        bad = frame.filter(broken)
        if bad.height:
            first = bad.row(0, named=True)
            raise BacktestError(
                f"sweep candles have {bad.height} candle(s) with {column}={first[column]!r} (first: "
                f"symbol={first['symbol']!r}, ts={first['ts']}); {fix}"
            )
    return frame.sort("symbol", "ts")


def _symbol_rows(frame: pl.DataFrame) -> tuple[list[str], np.ndarray]:
    counts = frame.group_by("symbol", maintain_order=True).len()
    start = np.zeros(counts.height + 1, dtype=np.int64)
    start[1:] = np.cumsum(counts["len"].to_numpy())
    return [str(s) for s in counts["symbol"].to_list()], start


def _columns(strategies: list[Strategy]) -> tuple[list[int | pl.Expr], np.ndarray, np.ndarray]:
    """The distinct indicator columns, and each parameter set's first and second column (-1: none)."""
    index: dict[Hashable, int] = {}
    exprs: list[int | pl.Expr] = []

    def slot(column: Column) -> int:
        key, expr = column
        if key not in index:
            index[key] = len(exprs)
            exprs.append(expr)
        return index[key]

    first = np.empty(len(strategies), dtype=np.int64)
    second = np.full(len(strategies), -1, dtype=np.int64)
    for i, strategy in enumerate(strategies):
        a, b = SWEEPABLE[type(strategy)](strategy)
        first[i] = slot(a)
        if b is not None:
            second[i] = slot(b)
    return exprs, first, second


# ------------------------------------------------------------------------------------------------ the run
def _chunks(start: np.ndarray, n_columns: int) -> list[tuple[int, int]]:
    """Runs of symbols ``[j0, j1)`` whose indicator table fits ``INDICATOR_BYTES`` (one symbol at least)."""
    chunks, j0 = [], 0
    k = len(start) - 1
    while j0 < k:
        j1 = j0 + 1
        while j1 < k and (start[j1 + 1] - start[j0]) * n_columns * 8 <= INDICATOR_BYTES:
            j1 += 1
        chunks.append((j0, j1))
        j0 = j1
    return chunks


def _run(
    frame: pl.DataFrame,
    symbols: list[str],
    start: np.ndarray,
    strategies: list[Strategy],
    columns: list[int | pl.Expr],
    first: np.ndarray,
    second: np.ndarray,
    config: BacktestConfig,
    timeframe: str,
    equity_curves: bool,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Stats ``(parameter sets * symbols, N_STATS)`` in parameter-set-major order, and each chunk's curves."""
    n_sets, k = len(strategies), len(symbols)
    bounds = np.array([s.rule.bounds() for s in strategies], dtype=np.float64).reshape(n_sets, 2)
    allow_short = np.array([s.rule.allow_short for s in strategies], dtype=np.bool_)
    stats = np.empty((n_sets * k, sweep_kernel.N_STATS))
    curves: list[np.ndarray] = [np.empty(0)] * (n_sets * k if equity_curves else 0)
    scalars = config.kernel_scalars()
    chunks = _chunks(start, len(columns))
    buffer = np.empty(len(columns) * max(int(start[j1] - start[j0]) for j0, j1 in chunks))  # reused: no fresh pages
    for j0, j1 in chunks:
        part = frame.slice(int(start[j0]), int(start[j1] - start[j0]))
        local = start[j0 : j1 + 1] - start[j0]
        ohlc = [np.ascontiguousarray(part[c].to_numpy().reshape(-1, 1)) for c in ("open", "high", "low", "close")]
        indicators = _indicators(part, ohlc[3], local, columns, buffer[: len(columns) * part.height])
        atr, frac = _per_symbol(ohlc, local, symbols[j0:j1], config, timeframe)
        c_param = np.repeat(np.arange(n_sets, dtype=np.int64), j1 - j0)
        c_symbol = np.tile(np.arange(j1 - j0, dtype=np.int64), n_sets)
        curve = np.empty((n_sets if equity_curves else 0, part.height, 1))
        open_, high, low, close = ohlc
        out = sweep_kernel.sweep_pass(
            open_,
            high,
            low,
            close,
            local,
            indicators,
            first,
            second,
            np.ascontiguousarray(bounds[:, 0]),
            np.ascontiguousarray(bounds[:, 1]),
            allow_short,
            c_param,
            c_symbol,
            frac,
            frac.shape == (1, 1),
            atr,
            scalars.init_cash,
            scalars.fee_rate,
            scalars.slippage,
            scalars.stop_loss,
            scalars.take_profit,
            scalars.trailing_stop,
            scalars.close_at_end,
            scalars.atr_stop,
            scalars.atr_trailing,
            scalars.limit_ttl_bars,
            scalars.limit_offset,
            scalars.maker_fee_rate,
            equity_curves,
            curve,
        )
        stats[c_param * k + c_symbol + j0] = out
        for p in range(n_sets if equity_curves else 0):
            for i in range(j1 - j0):
                curves[p * k + j0 + i] = curve[p, local[i] : local[i + 1], 0]
    return stats, curves


def _indicators(
    part: pl.DataFrame, close: np.ndarray, local: np.ndarray, columns: list[int | pl.Expr], buffer: np.ndarray
) -> np.ndarray:
    """The indicator table ``(columns, rows)`` of a chunk, in ``buffer``: SMA windows compiled, the rest by polars."""
    table = buffer.reshape(len(columns), part.height)
    windows = [(i, c) for i, c in enumerate(columns) if isinstance(c, int)]
    if windows:
        rows, sizes = (np.array(x, dtype=np.int64) for x in zip(*windows, strict=True))
        sweep_kernel.rolling_means(close, local, sizes, table, rows)
    exprs = [(i, c) for i, c in enumerate(columns) if isinstance(c, pl.Expr)]
    if exprs:
        values = part.select(c.over("symbol").cast(pl.Float64).fill_null(math.nan).alias(f"c{i}") for i, c in exprs)
        for i, _ in exprs:
            table[i] = values[f"c{i}"].to_numpy()
    return table


def _per_symbol(
    ohlc: list[np.ndarray], local: np.ndarray, symbols: list[str], config: BacktestConfig, timeframe: str
) -> tuple[np.ndarray, np.ndarray]:
    """ATR (NaN when no ATR stop) and position sizes ((1, 1): the fixed fraction) of a chunk's rows."""
    open_, high, low, close = ohlc
    use_atr = config.atr_stop is not None or config.atr_trailing is not None
    atr = np.full(close.shape, np.nan)
    frac = np.full((1, 1), float(config.fraction))
    if config.sizing != "fixed_fraction":
        frac = np.empty(close.shape)
    for i, symbol in enumerate(symbols):
        rows = slice(int(local[i]), int(local[i + 1]))
        if use_atr:
            atr[rows] = wilder_atr(high[rows], low[rows], close[rows], window=config.atr_window)
        if config.sizing != "fixed_fraction":
            prices = PriceArrays(
                ts=np.arange(rows.stop - rows.start),
                symbols=(symbol,),
                open=open_[rows],
                high=high[rows],
                low=low[rows],
                close=close[rows],
                signal=np.zeros((rows.stop - rows.start, 1), dtype=np.int8),
            )
            sized = size_fractions(prices, config, timeframe)
            frac[rows] = np.full((rows.stop - rows.start, 1), config.fraction) if sized is None else sized
    return atr, frac


# ------------------------------------------------------------------------------------------------ output
def _result(
    strategies: list[Strategy],
    sets: list[dict[str, Any]],
    symbols: list[str],
    start: np.ndarray,
    stats: np.ndarray,
    curves: list[np.ndarray],
    config: BacktestConfig,
    ppy: float,
) -> pl.DataFrame:
    from tradeloop.performance.metrics import sharpe_from_moments  # loaded on use, as BacktestResult's reports

    k = len(symbols)
    k_ = sweep_kernel
    fields = [name for name in type(strategies[0]).model_fields if name != "rule"]
    data: dict[str, Any] = {name: [getattr(s, name) for s in strategies for _ in range(k)] for name in fields}
    if any("rule" in values for values in sets):
        data["rule_entry"] = [s.rule.entry for s in strategies for _ in range(k)]
        data["rule_exit"] = [s.rule.exit for s in strategies for _ in range(k)]
        data["rule_allow_short"] = [s.rule.allow_short for s in strategies for _ in range(k)]
    bars = np.tile(np.diff(start), len(strategies))
    final = stats[:, k_.S_FINAL]
    data["symbol"] = symbols * len(strategies)
    data["trades"] = stats[:, k_.S_TRADES].astype(np.int64)
    data["final_equity"] = final
    data["total_return"] = final / float(config.init_cash) - 1.0
    data["sharpe"] = [
        sharpe_from_moments(float(m), float(sd), int(n), ppy)
        for m, sd, n in zip(stats[:, k_.S_RET_MEAN], stats[:, k_.S_RET_SD], bars, strict=True)
    ]
    data["max_drawdown"] = stats[:, k_.S_MAX_DD]
    frame = pl.DataFrame(data)
    if curves:
        frame = frame.with_columns(pl.Series("equity", curves, dtype=pl.List(pl.Float64)))
    return frame
