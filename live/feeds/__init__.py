"""Market-data feeds behind one interface: closed candles, batched per bar time."""

from live.feeds.base import CandleBatch, Feed
from live.feeds.replay import ReplayFeed

__all__ = ["CandleBatch", "Feed", "ReplayFeed"]
