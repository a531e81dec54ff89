"""The risk engine: pre-trade checks, the kill switch and correlation-aware sizing.

Pure domain code, shared by the live engine (between decide and persist) and the backtest:
``check_batch`` judges a bar's ``OrderIntent`` s against a ``PortfolioSnapshot``, the
session's ``RiskState`` (its ``RiskConfig``, kill switch and throttle memory) and each
instrument's ``MarketRules``; ``RiskState.on_equity`` trips the kill switch;
``target_weights``/``size_frac_matrix`` size positions. Time is always the bar's timestamp
(epoch ms), passed in. Each module's docstring lists its rules, numbered.
"""

from tradeloop.risk.checks import check_batch, check_intent, flatten_intents, is_reducing
from tradeloop.risk.config import RiskConfig
from tradeloop.risk.market import DECIMAL_PLACES, TICK_SIZE, MarketRules, round_to_step
from tradeloop.risk.records import (
    Holdings,
    KillSwitchTrip,
    PortfolioSnapshot,
    RiskApproved,
    RiskDenied,
    RiskResult,
    RiskRule,
)
from tradeloop.risk.sizing import (
    SizingConfig,
    TargetWeights,
    cluster_labels,
    returns_from_closes,
    size_frac_matrix,
    target_weights,
)
from tradeloop.risk.state import DAY_MS, RiskState

__all__ = [
    "DAY_MS",
    "DECIMAL_PLACES",
    "TICK_SIZE",
    "Holdings",
    "KillSwitchTrip",
    "MarketRules",
    "PortfolioSnapshot",
    "RiskApproved",
    "RiskConfig",
    "RiskDenied",
    "RiskResult",
    "RiskRule",
    "RiskState",
    "SizingConfig",
    "TargetWeights",
    "check_batch",
    "check_intent",
    "cluster_labels",
    "flatten_intents",
    "is_reducing",
    "returns_from_closes",
    "round_to_step",
    "size_frac_matrix",
    "target_weights",
]
