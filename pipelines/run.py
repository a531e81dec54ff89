"""Materialize the whole research graph in-process on the bundled sample (README's main job).

    python -m pipelines.run                      # every symbol partition, then the rest of the graph
    python -m pipelines.run --until 2025-07-01   # research sees only candles before that day

The runs are recorded in the Dagster instance `dagster dev` shows (``tradeloop up``, or
``DAGSTER_HOME=<data>/dagster dagster dev``): DAGSTER_HOME when set, else ``<data>/dagster``
(``Settings.dagster_dir``).
"""

import argparse
import sys
import time

import dagster as dg

from pipelines.definitions import defs
from pipelines.drift import DriftResource
from pipelines.partitions import register, universe_symbols
from pipelines.resources import ResearchResource, StoresResource
from pipelines.retrain import RetrainResource
from tradeloop.cli.common import console, dagster_home
from tradeloop.cli.model_card import evidence, params_text
from tradeloop.errors import TradeloopError

RESEARCH_CHAIN = ("features", "thresholds", "backtest", "promotion")


def materialize_all(
    resources: dict, instance: dg.DagsterInstance, *, log_level: str = "DEBUG"
) -> dg.ExecuteInProcessResult:
    """The research universe's ``candles`` partitions (added to ``instance`` first; one run
    each), then the research chain in one run. ``log_level``: what the runs print to the
    console (the instance stores every event whatever it is).

    ``resources`` needs ``stores``, ``research`` and ``exchange`` (see ``pipelines.resources``);
    ``retrain`` (``pipelines.retrain``) defaults to the default policy and gate, ``drift``
    (``pipelines.drift``: the graph's drift report needs it, though this run does not make one)
    to the default bars.
    Returns the last failing run, or the research chain's run.
    """
    resources = {"retrain": RetrainResource(), "drift": DriftResource(), **resources}  # the defaults
    assets = list(defs.assets)
    symbols = universe_symbols(resources["research"], resources["stores"].lake, resources["exchange"])
    register(instance, symbols)
    run_config = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    for symbol in symbols:
        result = dg.materialize(
            assets,
            selection=["candles"],
            partition_key=symbol,
            instance=instance,
            resources=resources,
            raise_on_error=False,
            run_config=run_config,
        )
        if not result.success:
            return result
    return dg.materialize(
        assets,
        selection=list(RESEARCH_CHAIN),
        instance=instance,
        resources=resources,
        raise_on_error=False,
        run_config=run_config,
    )


def open_instance() -> dg.DagsterInstance:
    """The Dagster instance shared with `dagster dev` (``Settings.dagster_dir``), created on
    first use: runs started here appear in the UI."""
    return dg.DagsterInstance.from_config(str(dagster_home()))


def _with(resource: dg.ConfigurableResource, **changes: object) -> dg.ConfigurableResource:
    """A copy of ``resource`` with ``changes`` (built anew: Dagster reads a resource's config
    from its constructor, so ``model_copy`` would not reach the run)."""
    return type(resource)(**{**resource.model_dump(exclude_unset=True), **changes})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Materialize the research graph in-process.")
    parser.add_argument(
        "--until",
        default="",
        help="data cut-off (ISO date): research sees only candles before it, so the months after it stay out of sample",
    )
    parser.add_argument("--strategy", default="", help="strategy to research (default: ResearchResource's)")
    parser.add_argument("--trials", type=int, default=0, help="optuna trials (default: ResearchResource's)")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="optuna worker processes (default: "
        "ResearchResource's); 1 makes the study reproducible (a seeded sampler, one process)",
    )
    parser.add_argument("--seed", type=int, default=None, help="the sampler's seed (default: ResearchResource's)")
    parser.add_argument(
        "--model",
        default=None,
        choices=("logistic", "hgb", "auto"),
        help="the threshold model's classifier (default: ResearchResource's, logistic); auto searches both",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="print the runs' log: -v their INFO lines, -vv every Dagster event (DEBUG)",
    )
    args = parser.parse_args(argv)
    log_level = ("WARNING", "INFO", "DEBUG")[min(args.verbose, 2)]
    started = time.perf_counter()
    resources = dict(defs.resources)
    resources["retrain"] = _with(resources["retrain"], data_until=args.until)
    changes = {
        k: v
        for k, v in (("strategy", args.strategy), ("n_trials", args.trials), ("workers", args.workers),
                     ("model", args.model))
        if v
    }  # fmt: skip
    resources["research"] = _with(
        resources["research"], **changes, **({"seed": args.seed} if args.seed is not None else {})
    )
    try:
        resources["retrain"].until_ms()
    except TradeloopError as exc:
        console.print(f"[red]--until: {exc}[/]")
        return 2
    with open_instance() as instance:
        result = materialize_all(resources, instance, log_level=log_level)
    if not result.success:
        console.print(
            f"[red]research run {result.run_id} failed; see the log above (-v prints more; the run's "
            "events are in the Dagster UI)[/]"
        )
        return 1
    promotion = result.asset_materializations_for_node("promotion")[0].metadata
    console.print(f"research pipeline done in {time.perf_counter() - started:.1f}s (run {result.run_id})")
    console.print(evidence(promotion["gate_checks"].data, {}))
    console.print(
        f"champion goes stale at {promotion['champion_stale_at'].value} unless retrained "
        f"({resources['retrain'].policy().describe()})",
        highlight=False,
    )
    research: ResearchResource = resources["research"]
    stores: StoresResource = resources["stores"]
    entry = stores.registry.champion(research.strategy)
    if entry is None:
        console.print("no champion: the gate refused the candidate")
        return 0
    state = "promoted now" if promotion["promoted"].value else "kept (the candidate did not beat it)"
    console.print(
        f"champion of {research.strategy}: {entry.artifact[:12]} - {state} "
        f"(`tradeloop models show {research.strategy}` prints its card)",
        highlight=False,
    )
    lineage = entry.lineage
    console.print(
        f"  git {lineage.git_commit[:12]}  data {lineage.data_snapshot[:12]}  run {lineage.run_id}  "
        f"notebook {lineage.notebook}",
        highlight=False,
    )
    console.print(f"  parameters {params_text(lineage.parameters)}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
