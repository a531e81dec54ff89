# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # New research notebook
#
# Copy this file (`cp notebooks/template.py notebooks/my_idea.py`) and open it in
# JupyterLab (`make lab`): jupytext shows it as a notebook, and Run All backtests a strategy
# on the lake of your settings. Keep logic in `tradeloop`; this notebook calls it, explains
# it and writes only to `output_dir`.
#
# Paths come from the settings (`TRADELOOP_DATA_DIR`), never from the folder the kernel
# started in: leave `lake_dir` and `output_dir` as `None` unless you mean another place.

# %% tags=["parameters"]
lake_dir = None  # None: the lake of the settings (TRADELOOP_DATA_DIR/lake)
output_dir = None  # None: scratch/ in the settings' research folder
exchange = "coinbase"
symbols = ["BTC-USD", "ETH-USD"]
timeframe = "4h"
strategy = "sma_cross"
params = {"fast": 10, "slow": 30}

# %%
from pathlib import Path

from tradeloop.backtest import BacktestConfig, backtest_strategy
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.performance import result_metrics
from tradeloop.settings import get_settings
from tradeloop.strategies import get_strategy

settings = get_settings()
lake = CandleLake(Path(lake_dir) if lake_dir else settings.lake_dir)
output = Path(output_dir) if output_dir else settings.research_dir / "scratch"
symbols = [symbols] if isinstance(symbols, str) else list(symbols)

candles = lake.read_many([SeriesKey(exchange, symbol, timeframe) for symbol in symbols])
config = BacktestConfig(fraction=1 / len(symbols), fee_rate=0.001, slippage=0.0005)  # shared cash, equal shares
result = backtest_strategy(get_strategy(strategy, **params), candles, config, timeframe=timeframe)
print(f"{result.strategy} on {lake.root}: {candles.height:,} candles of {', '.join(symbols)} {timeframe}")

# %% [markdown]
# ## Statistics, beside buy and hold of the same symbols
# Annualised figures of a period under 30 days say so instead of showing a number.

# %%
stats = result.stats()
stats

# %% [markdown]
# ## Equity and drawdown
# The dotted line is buy and hold (equal weight, same capital and fees). `log_scale=True`
# helps on long histories.

# %%
result.plot_equity()

# %% [markdown]
# ## Trades on the price
# Triangles up are buys, down are sells; hover for the trade's return and exit reason. Long
# histories are drawn with merged candles (the title says how many bars each holds).

# %%
result.plot_candles(symbols[0])

# %% [markdown]
# ## Per symbol

# %%
stats.symbols_table()

# %% [markdown]
# ## Monthly returns

# %%
result.plot_monthly_returns()

# %% [markdown]
# ## Rolling Sharpe (90 days)

# %%
result.plot_rolling_sharpe(window_days=90)

# %% [markdown]
# ## Outputs
# The metrics as a table, the trades, and the same report as a self-contained HTML file.

# %%
output.mkdir(parents=True, exist_ok=True)
result_metrics(result).write_parquet(output / "metrics.parquet")
result.trades.write_parquet(output / "trades.parquet")
print("report:", result.write_report(output / "report.html"))
result_metrics(result)
