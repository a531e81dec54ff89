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
# # Features
#
# Reads the research universe's candles from the lake and computes the feature set of
# `tradeloop.features` per symbol (returns, SMA/EMA, RSI, ATR, volatility, z-scores, volume
# features). Every feature only looks back: a test appends future candles and checks no
# computed row changes. The notebook writes one Parquet file: `output_path`.

# %% tags=["parameters"]
lake_dir = None  # None: the lake of the settings (TRADELOOP_DATA_DIR/lake)
exchange = "coinbase"
symbols = ["BTC-USD", "ETH-USD"]
timeframe = "4h"
output_path = None  # None: features.parquet in the settings' research folder

# %%
import matplotlib.pyplot as plt
import polars as pl

from tradeloop.data import CandleLake
from tradeloop.research.notebooks import research_paths
from tradeloop.research.steps import build_features, load_universe
from tradeloop.settings import get_settings

lake = CandleLake(lake_dir or get_settings().lake_dir)
output_path = output_path or research_paths().features
candles = load_universe(lake, exchange=exchange, symbols=list(symbols), timeframe=timeframe)
features = build_features(candles, output_path)
features.group_by("symbol").agg(
    pl.len().alias("bars"), pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last")
)

# %% [markdown]
# Nulls are the warm-up of each rolling window; beyond it there must be none.

# %%
features.null_count()

# %%
fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
for symbol, part in features.group_by("symbol", maintain_order=True):
    time = pl.from_epoch(part["ts"], time_unit="ms").to_numpy()  # UTC dates on the axis
    axes[0].plot(time, part["close"].to_numpy(), label=symbol[0])
    axes[1].plot(time, part["rsi_14"].to_numpy(), lw=0.3)
axes[0].set_yscale("log")
axes[0].legend()
axes[1].set_ylabel("RSI(14)")
plt.show()
