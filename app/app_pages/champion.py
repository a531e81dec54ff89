"""The champion model of each strategy, its lineage and the promotion history."""

import polars as pl
import sources
import streamlit as st

from tradeloop.errors import TradeloopError

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
    st.subheader("Freshness and research")
    try:
        model = registry.model_of(entry.artifact, strategy=name)
    except TradeloopError as exc:  # the live engine refuses it too (reduce-only)
        st.error(f"The champion's artifact does not load: {exc}")
    else:
        notes = sources.champion_notes(name, trained_until_ms=model.trained_until, max_age_ms=model.max_age_ms,
                                       promoted_at=entry.promoted_at)
        (st.error if notes["stale"] else st.info)(notes["age"])
        for line in notes["research"]:
            st.warning(line)
        if not notes["research"]:
            st.caption("No failed or refused retrain and no stale-soon warning in the audit log.")
    st.subheader("Lineage")
    st.json(lineage.model_dump(mode="json"), expanded=False)
    numbers = {k: float(v) for k, v in lineage.metrics.items() if isinstance(v, int | float)}
    if numbers:
        metrics = pl.DataFrame({"metric": list(numbers), "value": list(numbers.values())})
        st.bar_chart(metrics.to_pandas(), x="metric", y="value", horizontal=True)
    st.subheader("History")
    st.dataframe(pl.DataFrame(registry.history(name)), hide_index=True)
