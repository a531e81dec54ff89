"""Market-data lake: validated candles in Parquet, ccxt ingestion, import and coverage."""

from tradeloop.data.lake import CandleLake
from tradeloop.data.schema import CANDLE_COLUMNS, SeriesKey, earliest, latest, timeframe_ms
from tradeloop.data.validation import Gap, ValidationReport, find_gaps, validate_candles

__all__ = [
    "CANDLE_COLUMNS",
    "CandleLake",
    "Gap",
    "SeriesKey",
    "ValidationReport",
    "earliest",
    "find_gaps",
    "latest",
    "timeframe_ms",
    "validate_candles",
]
