"""A champion as the champion page shows it: facts for a card, the promotion gate as it was
judged, the walk-forward folds of the tuning run that produced it, links to its notebooks.

The facts and the gate read as ``tradeloop models show`` prints them (one definition:
``training_lines`` and ``metric_text``). The tuning evidence (``research/thresholds/tuning.json``)
is shown only when it is this champion's: same training end and same data hash; a later
research run that the gate refused has overwritten it otherwise.
"""

from __future__ import annotations

import json

import polars as pl

from tradeloop.cli.common import fmt_ts
from tradeloop.cli.model_card import metric_text, run_text, when_text
from tradeloop.cli.models_cmds import training_lines
from tradeloop.registry import ChampionEntry
from tradeloop.research.notebooks import LAB_ROOT, lab_link
from tradeloop.research.steps import TUNING_JSON
from tradeloop.settings import Settings
from tradeloop.thresholds import ThresholdModel

GATE_SCHEMA = {"check": pl.String, "value": pl.String, "bar": pl.String, "result": pl.String, "how": pl.String}
FOLD_SCHEMA = {
    "fold": pl.Int64,
    "from": pl.Datetime("ms"),
    "to": pl.Datetime("ms"),
    "trades": pl.Int64,
    "sharpe": pl.Float64,
    "max_drawdown": pl.Float64,
    "refits": pl.Int64,
    "stale_bars": pl.Int64,
}


def facts(entry: ChampionEntry, model: ThresholdModel) -> list[tuple[str, str]]:
    """(label, text) rows of the card: the model, its training window, data hash, universe,
    retrain policy, when it goes stale and where it came from."""
    est = model.estimator
    lineage = entry.lineage
    rule = "no new entry" if model.on_stale == "reduce_only" else "entries need break-even p*"
    return [
        (
            "model",
            f"{model.strategy.describe()}; threshold {est.threshold_:.4f} (p* {est.p_star_:.4f} + margin "
            f"{est.margin_:.4f})",
        ),
        *training_lines(model, data_snapshot=lineage.data_snapshot),
        (
            "stale after",
            f"{fmt_ts(model.trained_until + model.max_age_ms)} UTC "
            f"({model.max_age_ms / 86_400_000:g} days after its last training event; then {rule})",
        ),
        ("promoted", when_text(entry.promoted_at)),
        ("artifact", entry.artifact),
        ("git commit", lineage.git_commit),
        ("run", run_text(lineage.run_id)),
    ]


def gate_table(entry: ChampionEntry) -> pl.DataFrame:
    """The promotion gate's checks as promoted (value, bar, PASS/FAIL); empty when the lineage
    has none (a manual promotion, a replay refit, an older champion)."""
    rows = [
        {
            "check": str(c.get("name", "?")),
            "value": c.get("shown") or metric_text(str(c.get("name", "")), c.get("value")),
            "bar": c.get("shown_bar") or metric_text(str(c.get("name", "")), c.get("bar")),
            "result": "PASS" if c.get("passed") else "FAIL",
            "how": str(c.get("detail", "")),
        }
        for c in entry.lineage.gate
    ]
    return pl.DataFrame(rows, schema=GATE_SCHEMA)


def promotion_metrics(entry: ChampionEntry) -> pl.DataFrame:
    """The lineage's metrics as text (an older champion's evidence when it has no gate table)."""
    items = sorted(entry.lineage.metrics.items())
    return pl.DataFrame(
        {"metric": [k for k, _ in items], "value": [metric_text(k, v) for k, v in items]},
        schema={"metric": pl.String, "value": pl.String},
    )


def tuning_evidence(settings: Settings, model: ThresholdModel) -> dict | None:
    """The research run's ``tuning.json`` when it produced this model, else None."""
    path = settings.research_dir / "thresholds" / TUNING_JSON
    if not path.exists():
        return None
    try:
        tuning = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    same_end = tuning.get("trained_until") == model.trained_until
    data_hash = (model.info or {}).get("data_hash")
    if not same_end or (data_hash and tuning.get("data_version") not in (None, data_hash)):
        return None
    return tuning


def folds_frame(tuning: dict) -> pl.DataFrame:
    rows = [
        {
            "fold": f.get("index"),
            "from": f.get("test_start"),
            "to": f.get("test_end"),
            "trades": f.get("trades"),
            "sharpe": f.get("sharpe"),
            "max_drawdown": f.get("max_drawdown"),
            "refits": f.get("refits"),
            "stale_bars": f.get("stale_bars"),
        }
        for f in tuning.get("folds") or []
    ]
    frame = pl.DataFrame(rows, schema={**FOLD_SCHEMA, "from": pl.Int64, "to": pl.Int64})
    return frame.with_columns(pl.from_epoch("from", time_unit="ms"), pl.from_epoch("to", time_unit="ms")).cast(
        FOLD_SCHEMA
    )


def notebook_links(entry: ChampionEntry, settings: Settings) -> list[tuple[str, str]]:
    """(label, JupyterLab address, or the path where Lab cannot show it) of the champion's source
    notebook and of the executed notebooks of the run that produced it (``data/runs/<run id>/``)."""
    links = []
    if entry.lineage.notebook:
        source = LAB_ROOT / entry.lineage.notebook
        link = lab_link(source, lab_url=settings.lab_url) if source.exists() else None
        links.append((f"source: {entry.lineage.notebook}", link or entry.lineage.notebook))
    run = entry.lineage.run_id
    folder = settings.runs_dir / run if run and "/" not in run and ":" not in run else None
    if folder is not None and folder.is_dir():
        for executed in sorted(folder.glob("*.ipynb")):
            links.append(
                (
                    f"executed: {executed.name} (run {run[:8]})",
                    lab_link(executed, lab_url=settings.lab_url) or str(executed),
                )
            )
    return links


def history_frame(events: list[dict]) -> pl.DataFrame:
    frame = pl.DataFrame(events, schema={"event": pl.String, "artifact": pl.String, "at": pl.String})
    return frame.select(
        at=pl.col("at")
        .str.to_datetime(time_zone="UTC", strict=False)
        .dt.replace_time_zone(None)
        .dt.cast_time_unit("ms"),
        event="event",
        artifact=pl.col("artifact").str.slice(0, 12),
    ).sort("at", descending=True)
