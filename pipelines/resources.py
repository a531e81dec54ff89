"""Resources: where the stores live, what the research universe is, where candles come from.

Real and test versions differ only by configuration: tests point ``StoresResource`` at a
temporary folder and use ``ExchangeResource(mode="sample")``; production sets
``mode="ccxt"`` (with TRADELOOP_EXCHANGE_API_URL / keys from the environment).

The research universe is configuration too (``ResearchResource``): an explicit list of
symbols, or the top N by dollar volume over a lookback, picked from the lake
(``tradeloop.research.universe``). The candles asset's partitions follow it
(``pipelines.partitions``).
"""

from pathlib import Path

import dagster as dg
from pydantic import ValidationError

from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.importer import SAMPLE_DIR, import_file
from tradeloop.errors import config_error
from tradeloop.registry import ModelRegistry
from tradeloop.research.model_choice import ModelChoice
from tradeloop.research.universe import UniverseConfig, select_universe, universe_config
from tradeloop.settings import get_settings

#: the default research universe (an explicit list) when ResearchResource is not configured
RESEARCH_EXCHANGE = "coinbase"
RESEARCH_SYMBOLS = ("BTC-USD", "ETH-USD")
RESEARCH_TIMEFRAME = "4h"


class StoresResource(dg.ConfigurableResource):
    """The embedded stores under one data folder (default: TRADELOOP_DATA_DIR), absolute: the
    notebooks it hands paths to run in another working directory (the repository)."""

    data_dir: str = ""

    @property
    def root(self) -> Path:
        return (Path(self.data_dir) if self.data_dir else get_settings().data_dir).resolve()

    @property
    def lake(self) -> CandleLake:
        return CandleLake(self.root / "lake", quarantine_root=self.root / "quarantine")

    @property
    def research_dir(self) -> Path:
        return self.root / "research"

    @property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.root / "registry")

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id


class ResearchResource(dg.ConfigurableResource):
    """What to research: the universe, the strategy and the size of the search.

    The universe is ``symbols`` (an explicit list; the default) or, when ``top_n`` is set,
    the ``top_n`` series of ``exchange``/``timeframe`` with the largest dollar volume over
    the last ``lookback_days`` (only those quoted in ``quote`` when it is set). Setting both
    ``symbols`` and ``top_n`` is a ConfigError, as in ``UniverseConfig``.
    """

    exchange: str = RESEARCH_EXCHANGE
    symbols: list[str] = list(RESEARCH_SYMBOLS)
    timeframe: str = RESEARCH_TIMEFRAME
    top_n: int | None = None
    lookback_days: int = 30
    quote: str | None = None
    strategy: str = "sma_cross"
    n_trials: int = 20
    max_drawdown: float = -0.5  # worst out-of-sample drawdown a trial may have (negative fraction)
    seed: int = 0
    optuna_storage: str = ""  # SQLAlchemy URL; empty: a journal file beside the study
    workers: int = 2  # optuna worker processes sharing the study (tradeloop.research.workers)
    fraction: float = 0.5  # share of equity per position, as the live session sizes it
    # the threshold model (tradeloop.research.model_choice): logistic | hgb | auto (both searched)
    model: str = "logistic"
    features: str = "base"  # base | candidates (the engineered features)
    max_features: int | None = None  # keep this many features per refit; None: all

    def key(self, symbol: str) -> SeriesKey:
        return SeriesKey(self.exchange, symbol, self.timeframe)

    def model_choice(self) -> ModelChoice:
        """The model options as a validated ``ModelChoice`` (a ConfigError names a bad one)."""
        try:
            return ModelChoice(model=self.model, features=self.features, max_features=self.max_features)
        except ValidationError as exc:
            raise config_error(exc, what="ResearchResource's model options", model=ModelChoice) from None

    def universe_config(self) -> UniverseConfig:
        """The universe as a validated ``UniverseConfig`` (a ConfigError names a bad field)."""
        values: dict = {"exchange": self.exchange, "timeframe": self.timeframe}
        given = self.model_fields_set  # fields the configuration set, not their defaults
        if self.top_n is None:
            values["symbols"] = self.symbols
        else:
            values["top_n"] = self.top_n
            values["symbols"] = self.symbols if "symbols" in given else None
        values |= {name: getattr(self, name) for name in ("lookback_days", "quote") if name in given}
        return universe_config(**values)

    def universe(self, lake: CandleLake, *, until_ms: int | None = None) -> list[str]:
        """The universe's symbols now: the explicit list (each one stored), or the top N
        by dollar volume over the window ending at ``until_ms`` (default: the lake's latest)."""
        return select_universe(lake, self.universe_config(), until_ms=until_ms)


class ExchangeResource(dg.ConfigurableResource):
    """Where new candles come from: sample files (the bundled sample, or ``sample_dir`` of
    ``<exchange>__<SYMBOL>__<timeframe>.parquet`` files), or an exchange through ccxt."""

    mode: str = "sample"  # "sample" | "ccxt"
    exchange_id: str = ""  # ccxt id when mode == "ccxt" (default: the research exchange)
    since: str = "2017-01-01"
    sample_dir: str = ""  # sample mode: folder of candle files (default: the bundled sample)

    @property
    def samples(self) -> Path:
        return Path(self.sample_dir) if self.sample_dir else SAMPLE_DIR

    def sample_symbols(self, exchange: str, timeframe: str) -> list[str]:
        """Symbols with a sample file for ``exchange``/``timeframe`` (sample mode; else none)."""
        if self.mode != "sample":
            return []
        found = []
        for path in sorted(self.samples.glob(f"{exchange}__*__{timeframe}.parquet")):
            parts = path.stem.split("__")
            if len(parts) == 3:  # tagged snapshots (exchange__SYMBOL__tf__tag) are not series
                found.append(SeriesKey(*parts).symbol)
        return found

    def refresh(self, lake: CandleLake, key: SeriesKey) -> dict:
        if self.mode == "sample":
            path = self.samples / f"{key.filename_stem}.parquet"
            result = import_file(lake, path, key=key)
            source = "bundled sample" if not self.sample_dir else f"sample file {path.name}"
            return {"source": source, "rows_added": result.added}
        if self.mode == "ccxt":
            from datetime import UTC, datetime

            from tradeloop.data.exchanges import make_exchange
            from tradeloop.data.ingest import CandleIngestor
            from tradeloop.data.schema import ccxt_symbol

            settings = get_settings()
            exchange = make_exchange(
                self.exchange_id or key.exchange, timeout_s=settings.http_timeout_s, api_url=settings.exchange_api_url
            )
            since = int(datetime.fromisoformat(self.since).replace(tzinfo=UTC).timestamp() * 1000)
            result = CandleIngestor(exchange, lake).ingest(ccxt_symbol(key.symbol), key.timeframe, since=since)
            return {"source": f"ccxt {exchange.id}", "rows_added": result.added}
        raise dg.Failure(f"exchange mode {self.mode!r} is unknown; use 'sample' or 'ccxt'")
