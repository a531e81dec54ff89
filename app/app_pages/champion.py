"""The champion model of each strategy, its lineage and the promotion history."""

import polars as pl
import sources
import streamlit as st

st.title("Champion")
registry = sources.registry()
names = registry.strategies()
if not names:
    st.info("No champion yet: the research pipeline promotes one (`make demo`).")
    st.stop()
for name in names:
    entry = registry.champion(name)
    st.header(name)
    if entry is None:
        st.warning("no champion in force (rolled back past the first one?)")
        continue
    lineage = entry.lineage
    a, b, c = st.columns(3)
    a.metric("Artifact", entry.artifact[:12])
    b.metric("Promoted", entry.promoted_at[:19])
    c.metric("Git commit", (lineage.git_commit or "-")[:12])
    st.subheader("Lineage")
    st.json(lineage.model_dump(mode="json"), expanded=False)
    numbers = {k: float(v) for k, v in lineage.metrics.items() if isinstance(v, int | float)}
    if numbers:
        metrics = pl.DataFrame({"metric": list(numbers), "value": list(numbers.values())})
        st.bar_chart(metrics.to_pandas(), x="metric", y="value", horizontal=True)
    st.subheader("History")
    st.dataframe(pl.DataFrame(registry.history(name)), hide_index=True)
