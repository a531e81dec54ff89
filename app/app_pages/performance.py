"""Performance: a live session against the backtest of its own bars on its own terms (same
model, candles, capital, sizing and fees), and the research backtest under its sizing; every
run's terms are stated, and "live period only" cuts every chart and table to the session's bars."""

import formats as fmt
import polars as pl
import refresh
import sources
import streamlit as st
from charts import comparison_figure
from comparison import SHORT_SAMPLE_DAYS, Run, metrics_row, metrics_table

from tradeloop.ops.status import IN_SAMPLE_WARNING
from tradeloop.performance.plots import monthly_returns_figure

st.title("Performance")


def chosen_runs(store, name: str | None) -> list[Run]:
    runs: list[Run] = []
    if name is not None:
        tables = sources.session_tables(store, name)
        if tables.equity.height:
            runs.append(sources.live_run(tables))
            backtest = sources.backtest_run(tables)
            if isinstance(backtest, str):
                st.caption(f"No backtest on the session's terms: {backtest}.")
            else:
                runs.append(backtest)
        else:
            st.caption(f"Session {name!r} has not processed a bar yet.")
    research = sources.research_backtest()
    if research is not None and research.equity.height:
        runs.append(research)
    return runs


@st.fragment(run_every=refresh.every())
def performance() -> None:
    refresh.last_updated()
    store = sources.ops_store()
    names = sources.session_names(store)
    if not names and sources.research_backtest() is None:
        st.info("Nothing to show yet: run the research pipeline and a live session (`make demo`).")
        return
    name = st.selectbox("Session", names, key="perf-session", placeholder="No session: research backtest only")
    if name is not None and store.session(name).in_sample:
        st.badge(f"{name}: IN-SAMPLE", icon=":material/warning:", color="orange")
        st.warning(
            f"{name!r} is IN-SAMPLE: it {IN_SAMPLE_WARNING}; compare it with the backtest as a replay of "
            "the training data, not as evidence."
        )
    runs = chosen_runs(store, name)
    if not runs:
        st.info("Pick a session with bars, or run the research pipeline (`make demo`), to compare runs.")
        return
    labels = st.multiselect("Runs", [r.label for r in runs], default=[r.label for r in runs], key=f"runs-{name}")
    live = next((r for r in runs if r.kind == "live"), None)
    period = st.toggle(
        "Live period only",
        value=True,
        key="perf-period",
        disabled=live is None,
        help="Cut every run, chart and table to the bars the session traded",
    )
    if not labels:
        st.info("Pick at least one run above to compare.")
        return
    shown = [r for r in runs if r.label in labels]
    if live is not None and period:
        start, end = int(live.equity["ts"][0]), int(live.equity["ts"][-1])
        cut = [r.within(start, end) for r in shown]
        for run, part in zip(shown, cut, strict=True):
            if run.equity.height and not part.equity.height:  # said, not dropped without a word
                st.caption(
                    f"**{run.label}** has no bar in the live period (it covers {span(run)}): switch off "
                    "*Live period only* to see it."
                )
        shown = cut
    shown = [r for r in shown if r.equity.height]
    if not shown:
        st.info("None of the picked runs has a bar in the live period.")
        return
    report(shown, sample=sources.sample_label(store.session(name).in_sample) if name else None)


def span(run: Run) -> str:
    return f"{run.equity['time'].min():%Y-%m-%d %H:%M} to {run.equity['time'].max():%Y-%m-%d %H:%M} UTC"


def report(runs: list[Run], *, sample: str | None) -> None:
    st.subheader("Terms")
    for run in runs:
        st.markdown(f"- **{run.label}**: {run.sizing}; {span(run)}" + (f". *{run.note}*" if run.note else ""))
    st.subheader("Growth and drawdown")
    log = st.toggle("Log scale", key="perf-log")
    st.plotly_chart(comparison_figure(runs, log_scale=log, revision=",".join(r.label for r in runs)), key="perf-growth")
    st.subheader("Metrics")
    rows = [metrics_row(r) for r in runs]
    table = metrics_table(rows)
    samples = {"live": sample or "-", "backtest": "backtest", "research": "research (in-sample)"}
    table = pl.concat([table, pl.DataFrame({"metric": ["sample"], **{r.label: [samples[r.kind]] for r in runs}})])
    fmt.table(table, {"metric": fmt.text("metric"), **{r.label: fmt.text(r.label) for r in runs}}, max_rows=20)
    if not all(row["annualised"] for row in rows):
        st.caption(
            f"Annualised figures (CAGR, Sharpe, Sortino, volatility, Calmar) read n/a for runs under "
            f"{SHORT_SAMPLE_DAYS} days: over so few days they are noise, not rates."
        )
    st.subheader("Monthly returns")
    tabs = st.tabs([r.label for r in runs])
    for tab, run in zip(tabs, runs, strict=True):
        with tab:
            st.plotly_chart(
                monthly_returns_figure(run.equity.select("ts", "equity"), init_cash=run.init_cash, title=" "),
                key=f"monthly-{run.label}",
            )
    st.subheader("Trades")
    tabs = st.tabs([f"{r.label} ({r.trades.height})" for r in runs])
    for tab, run in zip(tabs, runs, strict=True):
        with tab:
            if run.trades.height:
                fmt.table(run.trades.sort("entry_time", descending=True), fmt.TRADES)
            else:
                st.caption("No trade in this period.")


performance()
