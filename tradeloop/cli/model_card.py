"""``tradeloop models show``: a champion as a readable card (or one JSON object for machines).

The card answers what an operator asks of a champion: what it is, what it was trained on
(window, data hash, universe, retrain policy), where it came from (commit, notebook, run),
and the evidence it was promoted on (the gate's checks with their bars).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from rich.console import Group, JustifyMethod
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


def when_text(iso: str) -> str:
    """An ISO time (``2026-01-31T12:00:00+00:00``) as ``2026-01-31 12:00 UTC``; as given if it is not one."""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    moment = moment.astimezone(UTC) if moment.tzinfo else moment
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def run_text(run_id: str | None) -> str:
    """Where the champion came from: a Dagster run id, or a replay's scheduled refit (``replay:<session>``)."""
    if not run_id:
        return "-"
    if run_id.startswith("replay:"):
        return f"{run_id} (a scheduled refit by the replay of session {run_id.removeprefix('replay:')!r})"
    return run_id


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
        ("promoted", when_text(entry.promoted_at)),
        (
            "model",
            f"{model.strategy.describe()}; threshold {est.threshold_:.4f} "
            f"(p* {est.p_star_:.4f} + margin {est.margin_:.4f})",
        ),
        *training,
        ("git commit", lineage.git_commit),
        ("notebook", lineage.notebook or "-"),
        ("run", run_text(lineage.run_id)),
        ("parameters", params_text(lineage.parameters) or "-"),
        (
            "history",
            f"{history} registry event(s)"
            + (f"; `tradeloop models rollback {entry.strategy}` restores the previous champion" if history > 1 else ""),
        ),
    ]
    for label, value in rows:
        facts.add_row(label, value)
    panel = Panel(facts, title=f"champion of [bold]{entry.strategy}[/]", title_align="left", expand=False)
    return Group(panel, evidence(lineage.gate, lineage.metrics, run_id=lineage.run_id))


def evidence(gate: list[dict], metrics: dict, *, run_id: str | None = None) -> Table | Text:
    """The gate's checks as promoted (value, bar, result), or the bare metrics of an older
    champion whose lineage has no gate table, or a line saying neither was recorded (a
    champion promoted by hand)."""
    if gate:
        tbl = Table(title="Promotion gate (out-of-sample evidence)", title_justify="left", header_style="bold")
        columns: tuple[tuple[str, JustifyMethod], ...] = (
            ("check", "left"),
            ("value", "right"),
            ("bar", "right"),
            ("result", "left"),
            ("how", "left"),
        )
        for col, justify in columns:
            tbl.add_column(col, justify=justify, overflow="fold")
        for check in gate:
            name = str(check.get("name", "?"))
            value = check.get("shown") or metric_text(name, check.get("value"))
            bar = check.get("shown_bar") or metric_text(name, check.get("bar"))
            result = "[green]PASS[/]" if check.get("passed") else "[red]FAIL[/]"
            tbl.add_row(name, value, bar, result, str(check.get("detail", "")))
        return tbl
    if not metrics and run_id and run_id.startswith("replay:"):
        return Text(
            "no promotion gate: a replay's scheduled refit is promoted without one (it refits, on more "
            "history, the parameters of the champion that passed the gate; `tradeloop models rollback` "
            "steps back to it)"
        )
    if not metrics:
        return Text(
            "no promotion gate or metrics recorded: promoted by hand (tradeloop models promote) or "
            "before the gate was kept in the lineage"
        )
    tbl = Table(title="Metrics at promotion", title_justify="left", header_style="bold", min_width=22)
    tbl.add_column("metric")
    tbl.add_column("value", justify="right")
    for name, value in sorted(metrics.items()):
        tbl.add_row(name, metric_text(name, value))
    return tbl


def params_text(parameters: dict) -> str:
    """``horizon=50, profit_mult=2.5, window=39``: sorted, floats to four significant digits."""
    return ", ".join(f"{k}={f'{v:.4g}' if isinstance(v, float) else v}" for k, v in sorted(parameters.items()))
