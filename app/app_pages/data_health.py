"""Coverage and gaps of every series in the market-data lake (its DuckDB views: the same
figures as `tradeloop data status`)."""

from datetime import UTC, datetime

import formats as fmt
import polars as pl
import sources
import streamlit as st
from charts import coverage_figure

HEALTH = {
    "series": fmt.text("series"),
    "candles": fmt.count("candles"),
    "first": fmt.when("first candle (UTC)"),
    "last": fmt.when("last candle (UTC)"),
    "coverage": fmt.percent("coverage", "stored / expected candles between the first and the last"),
    "gaps": fmt.count("gaps"),
    "missing": fmt.count("missing candles"),
    "invalid": fmt.count("invalid rows", "stored rows that break an import rule; readers leave them out"),
    "damaged_files": fmt.count("damaged files"),
}
GAPS = {
    "series": fmt.text("series"),
    "from": fmt.when("first missing (UTC)"),
    "to": fmt.when("last missing (UTC)"),
    "missing": fmt.count("missing candles"),
}

st.title("Data health")
st.caption(f"Read {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC from the lake at `{sources.settings().lake_dir}`")
health, gaps = sources.data_health()
if not health.height:
    st.info("The lake is empty: `tradeloop data import` loads the bundled sample.")
    st.stop()
a, b, c, d = st.columns(4)
a.metric("Series", f"{health.height:,}")
b.metric("Candles", f"{health['candles'].sum():,}")
c.metric("Series with gaps", f"{int((health['gaps'] > 0).sum()):,}")
d.metric("Missing candles", f"{int(health['missing'].sum()):,}")
flawed = health.filter((pl.col("invalid") > 0) | (pl.col("damaged_files") > 0))
if flawed.height:
    st.warning(
        f"{flawed.height} series hold stored rows that break the import rules or damaged files, which "
        f"readers leave out: {', '.join(flawed['series'])}. `tradeloop data status` names them."
    )
exchanges = sorted(health["exchange"].unique().to_list())
timeframes = sorted(health["timeframe"].unique().to_list())
left, right = st.columns(2)
picked_exchanges = left.multiselect("Exchanges", exchanges, default=exchanges, key="health-exchanges")
picked_timeframes = right.multiselect("Timeframes", timeframes, default=timeframes, key="health-timeframes")
shown = health.filter(pl.col("exchange").is_in(picked_exchanges) & pl.col("timeframe").is_in(picked_timeframes))
if not shown.height:
    st.info("No series matches the exchanges and timeframes picked above: pick at least one of each.")
    st.stop()
st.subheader("Series")
fmt.table(shown.sort("series"), HEALTH, max_rows=25)
st.subheader("Coverage")
st.plotly_chart(coverage_figure(shown), key="coverage")
st.subheader("Largest gaps")
holes = gaps.filter(pl.col("series").is_in(shown["series"].to_list()))
if holes.height:
    fmt.table(holes.head(50), GAPS)
    if holes.height > 50:
        st.caption(f"The 50 largest of {holes.height:,} gaps; `tradeloop data status` lists every one.")
else:
    st.caption("No gap: every series is continuous from its first candle to its last.")
