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
# # Backtest report
#
# The trained model trades the whole history with the backtest engine (next-open fills,
# fees, the same decision code the live engine runs). That history is **in-sample** (the
# model learnt from it): it is for display only. The figures the promotion gate judges are
# the out-of-sample ones: the walk-forward under the retrain policy, which refits and ages
# the model exactly as the live engine would.
# Outputs in `output_dir`: `metrics.json`, `equity.parquet`, `trades.parquet`.

# %% tags=["parameters"]
features_path = None  # None: the settings' research folder (TRADELOOP_DATA_DIR/research)
thresholds_dir = None  # None: thresholds/ there (notebooks/thresholds.py writes it)
timeframe = "4h"
output_dir = None  # None: backtest/ there
until_ms = None  # research sees only candles before this time (ms); None: all

# %%
from pathlib import Path

import polars as pl

from tradeloop.performance.plots import equity_figure
from tradeloop.research.notebooks import research_paths
from tradeloop.research.steps import EQUITY_PARQUET, MODEL_DIR, candles_of, report_backtest

features_path = features_path or research_paths().features
thresholds_dir = thresholds_dir or research_paths().thresholds
output_dir = output_dir or research_paths().backtest
candles = candles_of(pl.read_parquet(features_path))
if until_ms is not None:
    candles = candles.filter(pl.col("ts") < until_ms)
report = report_backtest(
    candles,
    model_dir=Path(thresholds_dir) / MODEL_DIR,
    evaluation_dir=thresholds_dir,
    timeframe=timeframe,
    output_dir=output_dir,
)
report["oos"], report["signals_taken"], report["signals_rejected"]

# %%
pl.DataFrame([report["full_history"]]).with_columns(pl.selectors.float().round(4))

# %% [markdown]
# Equity over its drawdown (in-sample history, shared cash: display only; log scale).

# %%
equity_figure(
    pl.read_parquet(Path(output_dir) / EQUITY_PARQUET),
    log_scale=True,
    title="equity (in-sample history, shared cash: display only)",
)
