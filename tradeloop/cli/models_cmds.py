"""``tradeloop models``: list, show, register, promote and roll back champions in the model registry.

Every command that reads a model loads it the safe way (schema-checked ``model.json``, the
classifier file's types checked against an exact allow-list before anything is built), so
a crafted artifact is refused with exit code 6 and never runs code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from tradeloop.cli.common import console, err_console, handle_errors
from tradeloop.cli.tables import FitTable
from tradeloop.errors import ModelError, TradeloopError
from tradeloop.settings import get_settings

app = typer.Typer(help="The model registry: champions, their lineage, promotion and rollback.", no_args_is_help=True)


def _registry():
    from tradeloop.registry import ModelRegistry  # scikit-learn & co. load only for these commands

    return ModelRegistry(get_settings().registry_dir)


@app.command("list")
@handle_errors
def list_models(
    wide: Annotated[bool, typer.Option("--wide", help="Every column, however wide the terminal")] = False,
) -> None:
    """Champions per strategy, and every stored artifact."""
    registry = _registry()
    tbl = FitTable(
        "Champions",
        ["strategy", "artifact", "promoted at", "oos sharpe/bar", "git commit", "run id"],
        optional=["oos sharpe/bar", "git commit", "run id"],
    )
    broken = []
    for name in registry.strategies():
        try:
            entry = registry.champion(name)
        except TradeloopError as exc:  # one broken manifest must not hide the others
            broken.append(str(exc))
            continue
        if entry is None:
            continue
        sharpe = entry.lineage.metrics.get("oos_sharpe_per_bar")
        tbl.add_row(
            name,
            entry.artifact[:12],
            entry.promoted_at,
            "-" if sharpe is None else f"{sharpe:.4f}",
            entry.lineage.git_commit[:12],
            entry.lineage.run_id or "-",
        )
    tbl.print(console, wide=wide)
    console.print(f"{len(registry.store.list())} artifact(s) stored under {registry.store.root}")
    for message in broken:
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if broken:
        raise typer.Exit(code=ModelError.exit_code)


@app.command()
@handle_errors
def show(
    strategy: Annotated[str, typer.Argument(help="Strategy name, e.g. sma_cross")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object (for machines) instead of the card")] = False,
) -> None:
    """The champion of STRATEGY as a card: model, training window, data hash, universe, lineage
    and the promotion gate's checks (verified against its content hash first)."""
    from tradeloop.cli.model_card import card

    registry = _registry()
    entry, model = registry.load(strategy)
    training = training_lines(model, data_snapshot=entry.lineage.data_snapshot)
    history = len(registry.history(strategy))
    if as_json:
        est = model.estimator
        print(
            json.dumps(
                {
                    "strategy": strategy,
                    "artifact": entry.artifact,
                    "promoted_at": entry.promoted_at,
                    "model": {
                        "strategy": model.strategy.describe(),
                        "threshold": est.threshold_,
                        "p_star": est.p_star_,
                        "margin": est.margin_,
                        "trained_until": model.trained_until,
                    },
                    "training": dict(training),
                    "lineage": entry.lineage.model_dump(mode="json"),
                    "history": history,
                },
                indent=2,
            )
        )
        return
    console.print(card(entry, model, training=training, history=history))


def training_lines(model, *, data_snapshot: str) -> list[tuple[str, str]]:
    """What the model was trained on: its window (first and last training event, as UTC
    dates), the data hash (``info["data_hash"]``, else the lineage's data snapshot), the
    universe and the retrain policy in words."""
    from tradeloop.cli.common import fmt_ts

    info = model.info or {}
    first = info.get("trained_from")
    first_text = fmt_ts(int(first)) if isinstance(first, int | float) and not isinstance(first, bool) else "unknown"
    data_hash = info.get("data_hash") or (data_snapshot if data_snapshot and data_snapshot != "unknown" else None)
    universe = model.universe
    window = f"{first_text} .. {fmt_ts(model.trained_until)} UTC (first .. last training event)"
    lines = [("training window", window), ("data hash", str(data_hash or "unknown"))]
    if universe is None:
        lines.append(("universe", "not recorded"))
    else:
        symbols = f"{len(universe.symbols)} symbol(s): {', '.join(universe.symbols)}"
        lines.append(("universe", f"exchange {universe.exchange}, timeframe {universe.timeframe}, {symbols}"))
    policy = info.get("retrain_policy")
    if isinstance(policy, dict) and policy:
        lines.append(("retrain policy", policy_text(policy)))
    return lines


def policy_text(policy: dict) -> str:
    """A recorded retrain policy in words (``refit every 30 day(s) on all history; stale after
    45 days, then reduce-only``); one this version cannot read, as its recorded keys."""
    from pydantic import ValidationError

    from tradeloop.research.policy import RetrainPolicy

    try:
        return RetrainPolicy(**policy).describe()
    except (ValidationError, TypeError):
        return ", ".join(f"{k}={v}" for k, v in sorted(policy.items()))


@app.command()
@handle_errors
def register(
    model_dir: Annotated[Path, typer.Argument(help="A saved model folder (model.json, classifier.skops)")],
) -> None:
    """Store a saved model folder in the registry (refused unless it loads safely); prints its id."""
    artifact = _registry().register(model_dir)
    console.print(f"registered {model_dir} as artifact {artifact}", highlight=False)


@app.command()
@handle_errors
def promote(
    strategy: Annotated[str, typer.Argument(help="Strategy name")],
    artifact: Annotated[str, typer.Argument(help="Artifact id (or a unique prefix)")],
    note: Annotated[str, typer.Option(help="Why (stored in the lineage parameters)")] = "manual promotion",
) -> None:
    """Make a stored artifact the champion of STRATEGY by hand (its hash is verified first)."""
    from tradeloop.registry import Lineage

    entry = _registry().promote(strategy, artifact, lineage=Lineage(parameters={"note": note}))
    console.print(f"promoted {entry.artifact[:12]} as champion of {strategy}")


@app.command()
@handle_errors
def rollback(strategy: Annotated[str, typer.Argument(help="Strategy name")]) -> None:
    """Put the previous champion of STRATEGY back in force."""
    entry = _registry().rollback(strategy)
    console.print(f"rolled back: {entry.artifact[:12]} is again the champion of {strategy}")
