"""The candles asset's partitions: one per symbol of the research universe, from the data.

``symbol_partitions`` is dynamic: its keys are added at run time, never listed in code.
``universe_symbols`` says which keys the universe needs now:

- an explicit list: its symbols (the candles asset fetches those not stored yet);
- the top N by dollar volume: the N picked from the lake; while the lake holds no series of
  the research exchange/timeframe, in sample mode, every sample file of that exchange and
  timeframe (the features step then picks the N once they are stored).

``pipelines.run.materialize_all`` adds the keys before it materializes; the new-candles
sensor adds them with its result (``SensorResult.dynamic_partitions_requests``).
Keys are only ever added: a symbol that leaves the universe keeps its history.

``research_universe`` is what the features step researches: the same universe, except that
a top N is picked over the lookback ending before the research data cut-off
(``RetrainResource.data_until``), so the pick itself sees no candle research must not see.

(No ``from __future__ import annotations`` here: Dagster reads the annotations.)
"""

import dagster as dg

from pipelines.resources import ExchangeResource, ResearchResource
from pipelines.retrain import RetrainResource
from tradeloop.data import CandleLake
from tradeloop.errors import SeriesNotFoundError

symbol_partitions = dg.DynamicPartitionsDefinition(name="symbols")


def universe_symbols(research: ResearchResource, lake: CandleLake, exchange: ExchangeResource) -> list[str]:
    """The partition keys the research universe needs now (see the module docstring)."""
    config = research.universe_config()
    if config.symbols is not None:
        return list(config.symbols)
    stored = any(k.exchange == config.exchange and k.timeframe == config.timeframe for k in lake.list_series())
    if not stored:
        candidates = exchange.sample_symbols(config.exchange, config.timeframe)
        if candidates:
            return candidates
        raise SeriesNotFoundError(
            f"research universe: top_n={config.top_n} picks from the {config.exchange} {config.timeframe} series in "
            f"the lake, and none is stored under {lake.root}; ingest the candidates first (`tradeloop data "
            "ingest`), or list the symbols explicitly (ResearchResource symbols)"
        )
    return research.universe(lake)


def research_universe(research: ResearchResource, lake: CandleLake, retrain: RetrainResource) -> list[str]:
    """The symbols research uses now: dollar volumes count only candles opened before the
    data cut-off, when there is one (see the module docstring)."""
    cutoff = retrain.until_ms()
    return research.universe(lake, until_ms=None if cutoff is None else cutoff - 1)


def missing_keys(instance: dg.DagsterInstance, symbols: list[str]) -> list[str]:
    """The symbols not yet registered as partitions, in order."""
    known = set(instance.get_dynamic_partitions(symbol_partitions.name))
    return [s for s in dict.fromkeys(symbols) if s not in known]


def register(instance: dg.DagsterInstance, symbols: list[str]) -> list[str]:
    """Add the symbols that are not partitions yet; returns those added."""
    new = missing_keys(instance, symbols)
    if new:
        instance.add_dynamic_partitions(symbol_partitions.name, new)
    return new
