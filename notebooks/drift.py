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
# # Drift of the champion
#
# Does live data still look like what the champion learnt from? Three views, each judged
# against a bar (`tradeloop.drift.DriftConfig`):
#
# * **features**: per model feature, the population stability index on ten quantile bins
#   of the training window, and a two-sample Kolmogorov-Smirnov test; a feature drifts when
#   both say so (PSI above 0.25 and p below 0.01);
# * **calibration**: the Brier score of the model's probability on the closed outcomes
#   since training, against the training window's: the champion's own closed trades in the
#   trading sessions once there are enough of them (`min_closed`), else the entries the
#   strategy fired, labelled by the triple barrier;
# * **hit rate**: the share of those outcomes that paid against the mean probability.
#
# The training window is the one the champion's lineage records (first training event to
# `trained_until`); the live window is every bar after it. The report is written to
# `output_path` (JSON); Dagster's drift sensor retrains when it is drifted.

# %% tags=["parameters"]
lake_dir = None  # None: the lake of the settings (TRADELOOP_DATA_DIR/lake)
registry_dir = None  # None: the registry of the settings (TRADELOOP_DATA_DIR/registry)
strategy = "sma_cross"
config = {}  # DriftConfig fields; {}: the defaults
until_ms = None  # judge bars up to this time (ms); None: all
database_url = None  # the sessions' database for their closed trades; None: the settings' (DATABASE_URL)
output_path = None  # None: drift/<strategy>.json in the settings' research folder

# %%
import matplotlib.pyplot as plt
import polars as pl

from tradeloop.data import CandleLake
from tradeloop.drift import DriftConfig, champion_drift, report_path, write_report
from tradeloop.ops import OpsStore
from tradeloop.registry import ModelRegistry
from tradeloop.settings import get_settings

settings = get_settings()
store = OpsStore.open(database_url or settings.effective_database_url)
try:
    report = champion_drift(
        CandleLake(lake_dir or settings.lake_dir),
        ModelRegistry(registry_dir or settings.registry_dir),
        strategy=strategy,
        config=DriftConfig.parse(config),
        until_ms=until_ms,
        store=store,
    )
finally:
    store.close()
write_report(report, output_path or report_path(settings.research_dir, strategy))
print("DRIFTED" if report.drifted else "no drift beyond the bars", *report.reasons, sep="\n")

# %%
pl.DataFrame(report.as_dict()["features"])

# %% [markdown]
# Reliability of the live closed outcomes: a calibrated model's points lie on the diagonal.

# %%
cal = report.calibration
print(f"{cal.closed} closed live outcomes ({cal.source}), Brier {cal.brier}, training {cal.reference_brier}; "
      f"hit rate {cal.hit_rate}")  # fmt: skip
fig, ax = plt.subplots(figsize=(4, 4))
ax.plot([0, 1], [0, 1], color="grey", lw=0.5)
ax.scatter([b.mean_proba for b in cal.reliability], [b.hit_rate for b in cal.reliability],
           s=[10 + b.count for b in cal.reliability])  # fmt: skip
ax.set_xlabel("predicted probability")
ax.set_ylabel("realised hit rate")
plt.show()
