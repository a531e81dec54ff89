"""The live engine's options, what a session's config must satisfy to be traded live, and
where a session's risk configuration and state are read from (``live.engine`` uses them)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from tradeloop.backtest import BacktestConfig
from tradeloop.errors import ConfigError
from tradeloop.ops import TradingSession
from tradeloop.risk import RiskConfig, RiskState
from tradeloop.thresholds.warmup import min_window_bars


class EngineConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    window_bars: int = Field(default=400, ge=10, description="bars of history per symbol each decision sees")
    publish: bool = True
    venue_check_every_bars: int = Field(
        default=10,
        ge=1,
        description="a venue's open orders, trades and balances are reconciled every this many bars (live.reconcile)",
    )
    heartbeat_s: float = Field(default=30.0, gt=0, description="heartbeat between bars (tradeloop.ops.status)")
    db_retry_base_s: float = Field(default=0.5, gt=0, description="first wait after the database is lost")
    db_retry_cap_s: float = Field(default=30.0, gt=0, description="longest wait between database pings")
    bus_retry_base_s: float = Field(default=0.5, gt=0, description="first wait after the bus is lost")
    bus_retry_cap_s: float = Field(default=30.0, gt=0, description="longest wait between relay attempts")
    max_order_age_ms: int | None = Field(
        default=None,
        gt=0,
        description="cancel an order still resting this long after its decision bar, in bar time "
        "(live.order_manager), e.g. 3600000 = one hour; None: never",
    )


def check_live_config(backtest: BacktestConfig, *, paper: bool = True) -> None:
    """What the live engine can trade: every order and sizing rule the backtest simulates on the
    paper broker (which replays the kernel: ``live.brokers.paper``); on a venue (``paper=False``)
    the same: market and limit entries (GTC at ``limit_offset`` from the close, canceled after
    ``limit_ttl_bars`` of the symbol's candles: ``live.order_manager`` rule 6; the venue charges
    its own fees, ``maker_fee_rate`` is the backtest's), exits with any sizing, and stops,
    trailing stops and take-profits, placed once an entry fills (native where the market lists
    them, engine-managed on closed bars otherwise: ``live.venue_protection``). One portfolio:
    ``cash_sharing=True``. (``close_at_end`` only closes a backtest's last bar; a live session has
    none.) ``paper`` is kept for the checks that differ by broker (none at present)."""
    if not backtest.cash_sharing:
        raise ConfigError(
            "cash_sharing=False gives each symbol its own cash; a live session keeps one: set cash_sharing=True"
        )


def check_window(strategy, window_bars: int, *, backtest: BacktestConfig | None = None) -> None:
    """The live window must hold the decision's warm-up (``tradeloop.thresholds.warmup``) and
    what ``backtest``'s sizing and stops read: ``vol_window + 1`` bars for ``vol_target`` and ``correlation``,
    ``atr_window + 1`` for an ATR stop (``live.entries``)."""
    needs = [(min_window_bars(strategy), f"the {strategy.name} decision's warm-up")]
    if backtest is not None and backtest.sizing in ("vol_target", "correlation"):
        needs.append((backtest.vol_window + 1, f"{backtest.sizing} sizing's vol_window={backtest.vol_window} returns"))
    if backtest is not None and (backtest.atr_stop is not None or backtest.atr_trailing is not None):
        needs.append((backtest.atr_window + 1, f"the ATR stops' atr_window={backtest.atr_window} warm-up"))
    need, what = max(needs, key=lambda n: n[0])
    if need > window_bars:
        raise ConfigError(
            f"window_bars={window_bars} is below {what} of {need} "
            f"bars per symbol: decisions would differ from research; pass --window-bars {need} or "
            "more (SessionConfig.window_bars)"
        )


def risk_config_of(session: TradingSession) -> RiskConfig:
    """The session's stored ``RiskConfig`` (the defaults when it has none: older sessions)."""
    return RiskConfig.parse(session.risk_config or {})


def risk_state_of(session: TradingSession, config: RiskConfig) -> RiskState:
    """The risk state the last committed bar stored (a fresh one for a new session)."""
    if session.risk_state is None:
        return RiskState(config)
    return RiskState.from_json(json.dumps(session.risk_state), config=config)


@dataclass
class Latency:
    """Nanoseconds from a bar's arrival to its decision and to its orders being committed."""

    decision: list[int] = field(default_factory=list)
    stored: list[int] = field(default_factory=list)
