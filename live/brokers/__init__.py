"""Brokers behind one interface: the paper broker (the backtest's fill rules) and ccxt."""

from live.brokers.base import Broker, FillReport, OrderRequest
from live.brokers.paper import PaperBroker

__all__ = ["Broker", "FillReport", "OrderRequest", "PaperBroker"]
