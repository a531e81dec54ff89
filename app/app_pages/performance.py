"""Performance of live sessions and of the research backtest, side by side."""

import polars as pl
import sources
import streamlit as st

from tradeloop.ops.status import IN_SAMPLE_WARNING

st.title("Performance")
store = sources.ops_store()
research = sources.research_backtest()
runs: dict[str, tuple[pl.DataFrame, float, str, pl.DataFrame | None]] = {}
if research is not None:
    runs["research backtest"] = (research["equity"], 10_000.0, "4h", research["trades"])
if store is not None:
    for s in store.sessions():
        equity = sources.session_tables(store, s.name)["equity"]
        if equity.height:
            runs[f"live: {s.name}"] = (equity, s.init_cash, s.timeframe, None)
if not runs:
    st.info("Nothing to show yet: run the research pipeline and a live session (`make demo`).")
    st.stop()

chosen = st.multiselect("Runs", list(runs), default=list(runs))
in_sample = {f"live: {n}" for n in sources.in_sample_sessions(store)} if store is not None else set()
for label in (r for r in chosen if r in in_sample):
    st.badge(f"{label}: IN-SAMPLE", icon=":material/warning:", color="orange")
    st.warning(f"{label.removeprefix('live: ')!r} is IN-SAMPLE: it {IN_SAMPLE_WARNING}; compare it with "
               "the backtest as a replay of the training data, not as evidence.")
live_start = min((runs[r][0]["ts"][0] for r in chosen if r.startswith("live")), default=None)
same_period = live_start is not None and st.toggle("Backtest over the live period only", value=True)

curves, drawdowns, rows = [], [], []
for label in chosen:
    equity, init_cash, timeframe, trades = runs[label]
    if same_period and not label.startswith("live"):
        equity = equity.filter(pl.col("ts") >= live_start)
        init_cash = float(equity["equity"][0]) if equity.height else init_cash
    if not equity.height:
        continue
    growth = sources.with_drawdown(equity).with_columns(growth=pl.col("equity") / init_cash, run=pl.lit(label))
    curves.append(growth.select("time", "run", "growth"))
    drawdowns.append(growth.select("time", "run", "drawdown"))
    sample = sources.sample_label(label in in_sample) if label.startswith("live") else "backtest"
    rows.append({**sources.metrics_row(label, equity, init_cash=init_cash, timeframe=timeframe, trades=trades),
                 "sample": sample})

st.subheader("Equity (growth of 1)")
st.line_chart(pl.concat(curves).to_pandas(), x="time", y="growth", color="run")
st.subheader("Drawdown")
st.area_chart(pl.concat(drawdowns).to_pandas(), x="time", y="drawdown", color="run", stack=False)
st.subheader("Metrics")
st.dataframe(pl.DataFrame(rows), hide_index=True)
st.subheader("Trades")
tabs = st.tabs(chosen)
for tab, label in zip(tabs, chosen, strict=True):
    with tab:
        if label.startswith("live"):
            fills = sources.session_tables(store, label.removeprefix("live: "))["fills"]
            st.dataframe(fills.select("time", "symbol", "side", "quantity", "price", "fee"), hide_index=True)
        else:
            st.dataframe(runs[label][3], hide_index=True)
