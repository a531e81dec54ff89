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
# JupyterLab (`make lab`): jupytext shows it as a notebook. Keep logic in `tradeloop`;
# this notebook calls it, explains it and writes only to `output_dir`.

# %% tags=["parameters"]
lake_dir = "data/lake"
exchange = "coinbase"
symbol = "BTC-USD"
timeframe = "4h"
output_dir = "data/research/scratch"

# %%
from pathlib import Path

from tradeloop.backtest import BacktestConfig, backtest_strategy
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.performance import result_metrics
from tradeloop.strategies import SmaCross

candles = CandleLake(lake_dir).read(SeriesKey(exchange, symbol, timeframe))
result = backtest_strategy(SmaCross(fast=10, slow=30), candles, BacktestConfig(), timeframe=timeframe)
Path(output_dir).mkdir(parents=True, exist_ok=True)
result_metrics(result).write_parquet(Path(output_dir) / "metrics.parquet")
result_metrics(result)
