"""A trading session's options: what a new session is stored with and how the engine runs it."""

from __future__ import annotations

from pydantic import Field

from live.brokers.perps import PerpInstrument
from tradeloop.backtest import BacktestConfig
from tradeloop.ops import TradingSession
from tradeloop.ops.session_spec import SessionSpec


class SessionConfig(SessionSpec):
    """A trading session's options (``tradeloop live run --help`` lists them): what a new
    session is stored with (``SessionSpec``) and how the engine runs it."""

    speed: float = Field(default=0.0, ge=0.0)
    window_bars: int = Field(default=400, ge=10)
    follow_s: float | None = Field(default=None, gt=0, description="after the replay, poll the lake this often")
    feed_stale_after_s: float = Field(default=180.0, gt=0, description="ccxt feed: report a symbol stale after this")
    perps: dict[str, PerpInstrument] = Field(
        default_factory=dict,
        description="leverage and margin mode per symbol of a perpetuals venue (binanceusdm), set on the venue "
        "before the symbol's first order, e.g. {'BTC-USDT': PerpInstrument(leverage=3, margin_mode='isolated')}",
    )


def backtest_config(session: TradingSession) -> BacktestConfig:
    return BacktestConfig(**session.config)
