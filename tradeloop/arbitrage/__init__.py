"""Cross-venue arbitrage detection (``tradeloop.arbitrage.scanner``): pure, no I/O; the live
service (``live.arbitrage``) feeds it top of book and publishes and stores what it finds."""

from tradeloop.arbitrage.scanner import (
    ArbitrageConfig,
    ArbitrageEvent,
    ArbitrageScanner,
    Opportunity,
    Quote,
    TopOfBook,
    quote,
)

__all__ = ["ArbitrageConfig", "ArbitrageEvent", "ArbitrageScanner", "Opportunity", "Quote", "TopOfBook", "quote"]
