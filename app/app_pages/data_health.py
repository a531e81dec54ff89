"""Coverage and gaps of every series in the market-data lake (its DuckDB views: the same
figures as `tradeloop data status`)."""

import polars as pl
import sources
import streamlit as st

st.title("Data health")
health = sources.data_health()
if not health.height:
    st.info("The lake is empty: `tradeloop data import` loads the bundled sample.")
    st.stop()
a, b, c = st.columns(3)
a.metric("Series", health.height)
b.metric("Candles", f"{health['candles'].sum():,}")
c.metric("Series with gaps", int((health["gaps"] > 0).sum()))
flawed = health.filter((pl.col("invalid") > 0) | (pl.col("damaged_files") > 0))
if flawed.height:
    st.warning(f"{flawed.height} series hold stored rows that break the import rules or damaged files, which "
               f"readers leave out: {', '.join(flawed['series'])}. `tradeloop data status` names them.")
st.subheader("Coverage")
st.bar_chart(health.select("series", "coverage").to_pandas(), x="series", y="coverage")
st.subheader("Missing candles")
st.bar_chart(health.select("series", "missing").to_pandas(), x="series", y="missing")
st.dataframe(health, hide_index=True, column_config={"coverage": st.column_config.NumberColumn(format="percent")})
