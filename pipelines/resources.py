"""Resources: where the stores live, what the research universe is, where candles come from.

Real and test versions differ only by configuration: tests point ``StoresResource`` at a
temporary folder and use ``ExchangeResource(mode="sample")``; production sets
``mode="ccxt"`` (with TRADELOOP_EXCHANGE_API_URL / keys from the environment).
"""

from pathlib import Path

import dagster as dg

from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.importer import SAMPLE_DIR, import_file
from tradeloop.registry import ModelRegistry
from tradeloop.settings import get_settings

#: the research universe: symbols share timestamps, so one walk-forward cuts them all
RESEARCH_EXCHANGE = "coinbase"
RESEARCH_SYMBOLS = ("BTC-USD", "ETH-USD")
RESEARCH_TIMEFRAME = "4h"


class StoresResource(dg.ConfigurableResource):
    """The embedded stores under one data folder (default: TRADELOOP_DATA_DIR)."""

    data_dir: str = ""

    @property
    def root(self) -> Path:
        return Path(self.data_dir) if self.data_dir else get_settings().data_dir

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
    """What to research: the universe, the strategy and the size of the search."""

    exchange: str = RESEARCH_EXCHANGE
    symbols: list[str] = list(RESEARCH_SYMBOLS)
    timeframe: str = RESEARCH_TIMEFRAME
    strategy: str = "sma_cross"
    n_trials: int = 20
    max_drawdown: float = 0.5
    seed: int = 0
    optuna_storage: str = ""  # SQLAlchemy URL; empty: a journal file beside the study

    def key(self, symbol: str) -> SeriesKey:
        return SeriesKey(self.exchange, symbol, self.timeframe)


class ExchangeResource(dg.ConfigurableResource):
    """Where new candles come from: the bundled sample, or an exchange through ccxt."""

    mode: str = "sample"  # "sample" | "ccxt"
    exchange_id: str = ""  # ccxt id when mode == "ccxt" (default: the research exchange)
    since: str = "2017-01-01"

    def refresh(self, lake: CandleLake, key: SeriesKey) -> dict:
        if self.mode == "sample":
            path = SAMPLE_DIR / f"{key.filename_stem}.parquet"
            result = import_file(lake, path, key=key)
            return {"source": "bundled sample", "rows_added": result.added}
        if self.mode == "ccxt":
            from datetime import UTC, datetime

            from tradeloop.data.exchanges import make_exchange
            from tradeloop.data.ingest import CandleIngestor
            from tradeloop.data.schema import ccxt_symbol

            settings = get_settings()
            exchange = make_exchange(self.exchange_id or key.exchange, timeout_s=settings.http_timeout_s,
                                     api_url=settings.exchange_api_url)
            since = int(datetime.fromisoformat(self.since).replace(tzinfo=UTC).timestamp() * 1000)
            result = CandleIngestor(exchange, lake).ingest(ccxt_symbol(key.symbol), key.timeframe, since=since)
            return {"source": f"ccxt {exchange.id}", "rows_added": result.added}
        raise dg.Failure(f"exchange mode {self.mode!r} is unknown; use 'sample' or 'ccxt'")
