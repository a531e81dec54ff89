"""Cross-venue arbitrage detection (``tradeloop.arbitrage.scanner``) and the sizing and result of
its paper execution (``tradeloop.arbitrage.execution``): pure, no I/O; the live service
(``live.arbitrage``) feeds it top of book and publishes and stores what it finds."""

from tradeloop.arbitrage.execution import (
    DEFAULT_STEP,
    LegFill,
    MarketLimits,
    PairPlan,
    PairResult,
    PaperExecutionConfig,
    assets,
    balances,
    floor_step,
    pair_result,
    plan_pair,
    session_quote,
)
from tradeloop.arbitrage.scanner import (
    ArbitrageConfig,
    ArbitrageEvent,
    ArbitrageScanner,
    Opportunity,
    Quote,
    TopOfBook,
    quote,
)

__all__ = [
    "DEFAULT_STEP",
    "ArbitrageConfig",
    "ArbitrageEvent",
    "ArbitrageScanner",
    "LegFill",
    "MarketLimits",
    "Opportunity",
    "PairPlan",
    "PairResult",
    "PaperExecutionConfig",
    "Quote",
    "TopOfBook",
    "assets",
    "balances",
    "floor_step",
    "pair_result",
    "plan_pair",
    "quote",
    "session_quote",
]
