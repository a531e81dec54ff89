"""The champion model of each strategy: a card with its lineage (training window, data hash,
universe, notebooks), its freshness, the promotion gate as it was judged, the tuning
evidence it came from and the promotion history."""

from datetime import UTC, datetime

import champion_card as card
import formats as fmt
import sources
import streamlit as st

from tradeloop.errors import TradeloopError

GATE = {
    "check": fmt.text("check"),
    "value": fmt.text("value"),
    "bar": fmt.text("bar"),
    "result": fmt.text("result"),
    "how": fmt.text("how it is measured", width="large"),
}
FOLDS = {
    "fold": fmt.count("fold"),
    "from": fmt.when("test from"),
    "to": fmt.when("test to"),
    "trades": fmt.count("trades"),
    "sharpe": fmt.C.NumberColumn("Sharpe per bar", format="%.4f"),
    "max_drawdown": fmt.percent("max drawdown"),
    "refits": fmt.count("refits"),
    "stale_bars": fmt.count("stale bars"),
}
HISTORY = {"at": fmt.when("at (UTC)"), "event": fmt.text("event"), "artifact": fmt.text("artifact")}

st.title("Champion")
st.caption(f"Read {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC from the model registry")
registry = sources.registry()
names = registry.strategies()
if not names:
    st.info("No champion yet: the research pipeline promotes one (`make demo`).")
    st.stop()
name = (
    st.selectbox("Strategy", names, key="champion-strategy", placeholder="Pick a strategy")
    if len(names) > 1
    else names[0]
)
if name is None:
    st.info("Pick a strategy above to see its champion.")
    st.stop()
st.header(name)
entry = registry.champion(name)
if entry is None:
    st.warning("No champion in force (rolled back past the first one?): `tradeloop models promote` sets one.")
    st.stop()
try:
    model = registry.model_of(entry.artifact, strategy=name)
except TradeloopError as exc:  # the live engine refuses it too (reduce-only)
    st.error(f"The champion's artifact does not load: {exc}")
    st.stop()

with st.container(border=True):
    est = model.estimator
    a, b, c, d = st.columns(4)
    a.metric("Artifact", entry.artifact[:12], help=entry.artifact)
    b.metric("Promoted", entry.promoted_at[:10], help=entry.promoted_at)
    c.metric("Threshold", f"{est.threshold_:.4f}", help=f"p* {est.p_star_:.4f} + margin {est.margin_:.4f}")
    d.metric("Git commit", (entry.lineage.git_commit or "-")[:10], help=entry.lineage.git_commit)
    st.markdown("\n".join(f"- **{label}**: {text}" for label, text in card.facts(entry, model)))
    links = card.notebook_links(entry, sources.settings())
    if links:
        st.markdown(
            "**Notebooks** (open in JupyterLab, `make lab`): "
            + " · ".join(
                f"[{label}]({href})" if href.startswith("http") else f"{label}: `{href}`" for label, href in links
            )
        )
    if entry.lineage.parameters:
        with st.expander("Parameters"):
            st.markdown("\n".join(f"- `{k}` = {v}" for k, v in sorted(entry.lineage.parameters.items())))

st.subheader("Freshness and research")
notes = sources.champion_notes(
    name, trained_until_ms=model.trained_until, max_age_ms=model.max_age_ms, promoted_at=entry.promoted_at
)
(st.error if notes["stale"] else st.info)(notes["age"])
for line in notes["research"]:
    st.warning(line)
if not notes["research"]:
    st.caption("No failed or refused retrain and no stale-soon warning in the audit log.")

st.subheader("Promotion gate")
gate = card.gate_table(entry)
if gate.height:
    failed = int((gate["result"] == "FAIL").sum())
    verdict = (
        "every check passed" if not failed else f"{failed} check(s) failed (promoted by hand, or under other bars)"
    )
    st.caption(f"The out-of-sample evidence it was promoted on: {verdict}.")
    fmt.table(gate, GATE, max_rows=12)
else:
    metrics = card.promotion_metrics(entry)
    if metrics.height:
        st.caption(
            "This champion's lineage holds no gate table (promoted before it was recorded): its metrics at promotion."
        )
        fmt.table(metrics, {"metric": fmt.text("metric"), "value": fmt.text("value")}, max_rows=20)
    else:
        st.caption(
            f"Promoted without the gate (run {entry.lineage.run_id or '-'}: a manual promotion or a replay's "
            "scheduled refit), so there is no gate evidence to show."
        )

tuning = card.tuning_evidence(sources.settings(), model)
if tuning is not None:
    st.subheader("Tuning evidence")
    a, b, c = st.columns(3)
    a.metric("Trials", f"{tuning.get('n_trials', 0):,}")
    b.metric("Best OOS Sharpe per bar", f"{tuning.get('best_oos_sharpe', float('nan')):.4f}")
    c.metric("Training events", f"{tuning.get('events', 0):,}")
    st.caption("The best trial's walk-forward test folds under the retrain policy (what live would have traded).")
    fmt.table(card.folds_frame(tuning), FOLDS, max_rows=12)

st.subheader("History")
history = card.history_frame(registry.history(name))
if history.height:
    fmt.table(history, HISTORY)
else:
    st.caption("No promotion or rollback logged.")
