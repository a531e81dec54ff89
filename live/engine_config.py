"""The live engine's options, what a session's config must satisfy to be traded live
(``check_live_config``, ``check_window``: ``tradeloop.ops.session_spec``, which the API's
session creation shares), and where a session's risk configuration and state are read from
(``live.engine`` uses them)."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from tradeloop.observability import SessionMetrics
from tradeloop.ops import TradingSession
from tradeloop.ops.session_spec import check_live_config, check_window  # noqa: F401  (live.engine re-exports them)
from tradeloop.risk import RiskConfig, RiskState


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


def risk_config_of(session: TradingSession) -> RiskConfig:
    """The session's stored ``RiskConfig`` (the defaults when it has none: older sessions)."""
    return RiskConfig.parse(session.risk_config or {})


def risk_state_of(session: TradingSession, config: RiskConfig) -> RiskState:
    """The risk state the last committed bar stored (a fresh one for a new session)."""
    if session.risk_state is None:
        return RiskState(config)
    return RiskState.from_json(json.dumps(session.risk_state), config=config)


LATENCY_WINDOW = 100_000  # bars of latency kept in memory (bench/live.py reads them); every bar's is in the histogram


@dataclass
class Latency:
    """Nanoseconds from a bar's arrival to its decision and to its orders being committed: the
    last ``LATENCY_WINDOW`` bars' (a 24/7 process keeps no unbounded list), and every bar's in
    the session's ``tradeloop_bar_latency_seconds`` histogram when ``metrics`` is given."""

    metrics: SessionMetrics | None = None
    decision: deque[int] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    stored: deque[int] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def decided(self, ns: int) -> None:
        self.decision.append(ns)
        if self.metrics is not None:
            self.metrics.latency("decided", ns)

    def committed(self, ns: int) -> None:
        self.stored.append(ns)
        if self.metrics is not None:
            self.metrics.latency("stored", ns)
