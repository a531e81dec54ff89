"""Cross-venue arbitrage detection (``tradeloop.arbitrage.scanner``) and the sizing and result of
its paper execution (``tradeloop.arbitrage.execution``): pure, no I/O; the live service
(``live.arbitrage``) feeds it top of book and publishes and stores what it finds."""

from tradeloop.arbitrage.execution import (
    LegFill,
    PairPlan,
    PairResult,
    PaperExecutionConfig,
    assets,
    balances,
    pair_result,
    plan_pair,
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
    "ArbitrageConfig",
    "ArbitrageEvent",
    "ArbitrageScanner",
    "LegFill",
    "Opportunity",
    "PairPlan",
    "PairResult",
    "PaperExecutionConfig",
    "Quote",
    "TopOfBook",
    "assets",
    "balances",
    "pair_result",
    "plan_pair",
    "quote",
]
