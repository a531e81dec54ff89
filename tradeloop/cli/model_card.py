"""``tradeloop models show``: a champion as a readable card (or one JSON object for machines).

The card answers what an operator asks of a champion: what it is, what it was trained on
(window, data hash, universe, retrain policy), where it came from (commit, notebook, run),
and the evidence it was promoted on (the gate's checks with their bars).
"""

from __future__ import annotations

import math

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tradeloop.registry.manifest import ChampionEntry

PERCENT_KEYS = ("drawdown", "return", "cagr", "win_rate", "exposure")


def metric_text(name: str, value: object) -> str:
    """A metric as people read it: drawdowns and returns as percentages, counts as integers,
    ratios with four decimals."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "none" if value < 0 else "inf"
    if any(key in name for key in PERCENT_KEYS):
        return f"{value:.1%}"
    if float(value).is_integer() and "sharpe" not in name and "pbo" not in name:
        return f"{int(value):,}"
    return f"{value:.4f}"


def card(entry: ChampionEntry, model, *, training: list[tuple[str, str]], history: int) -> Group:
    """The champion ``entry`` (its loaded ``model``) as a rich renderable: a key/value panel,
    then the promotion gate's table (or its metrics when the gate was not recorded)."""
    lineage = entry.lineage
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold", no_wrap=True)
    facts.add_column(overflow="fold")
    est = model.estimator
    rows = [
        ("artifact", f"{entry.artifact} (hash verified)"),
        ("promoted", entry.promoted_at),
        ("model", f"{model.strategy.describe()}; threshold {est.threshold_:.4f} "
                  f"(p* {est.p_star_:.4f} + margin {est.margin_:.4f})"),
        *training,
        ("git commit", lineage.git_commit),
        ("notebook", lineage.notebook or "-"),
        ("Dagster run", lineage.run_id or "-"),
        ("parameters", ", ".join(f"{k}={_short(v)}" for k, v in sorted(lineage.parameters.items())) or "-"),
        ("history", f"{history} registry event(s)" + (f"; `tradeloop models rollback {entry.strategy}` restores "
                                                          "the previous champion" if history > 1 else "")),
    ]
    for label, value in rows:
        facts.add_row(label, value)
    panel = Panel(facts, title=f"champion of [bold]{entry.strategy}[/]", title_align="left", expand=False)
    return Group(panel, evidence(lineage.gate, lineage.metrics))


def evidence(gate: list[dict], metrics: dict) -> Table | Text:
    """The gate's checks as promoted (value, bar, result), or the bare metrics of an older
    champion whose lineage has no gate table, or a line saying neither was recorded (a
    champion promoted by hand)."""
    if gate:
        tbl = Table(title="Promotion gate (out-of-sample evidence)", title_justify="left", header_style="bold")
        for col, justify in (("check", "left"), ("value", "right"), ("bar", "right"), ("result", "left"),
                             ("how", "left")):
            tbl.add_column(col, justify=justify, overflow="fold")
        for check in gate:
            name = str(check.get("name", "?"))
            value = check.get("shown") or metric_text(name, check.get("value"))
            bar = check.get("shown_bar") or metric_text(name, check.get("bar"))
            result = "[green]PASS[/]" if check.get("passed") else "[red]FAIL[/]"
            tbl.add_row(name, value, bar, result, str(check.get("detail", "")))
        return tbl
    if not metrics:
        return Text("no promotion gate or metrics recorded: promoted by hand (tradeloop models promote) or "
                    "before the gate was kept in the lineage")
    tbl = Table(title="Metrics at promotion", title_justify="left", header_style="bold", min_width=22)
    tbl.add_column("metric")
    tbl.add_column("value", justify="right")
    for name, value in sorted(metrics.items()):
        tbl.add_row(name, metric_text(name, value))
    return tbl


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
