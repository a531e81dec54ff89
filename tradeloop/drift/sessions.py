"""The champion's own closed trades in the trading sessions, as outcomes for calibration drift.

The drift report judges calibration and the hit rate on outcomes after the training window.
Where sessions have traded the champion, their closed round trips are those outcomes: what the
model said at each entry (the ``proba`` of its ``order_decided`` audit row) against whether
the trade earned, net of fees (``tradeloop.thresholds.feedback`` builds the round trips, as
the live threshold adaptation does). Rules:

1. Sessions of the strategy only, and not those trading in-sample bars (``in_sample``: the
   model saw those bars in training, so its probabilities there prove nothing).
2. Entries the champion decided: the audit row names its ``artifact`` (a decision recorded
   before the artifact was, or by another model, does not count).
3. A trade is labelled 1 when its net return is above zero, else 0, as a training event is
   labelled 1 when its return net of costs is (``tradeloop.thresholds.labels``); the training
   event exits at a barrier, the trade by the strategy's own rules and stops, so the live
   labels are what the entries really earned: a model whose probabilities no longer say that
   is what calibration drift means here. A trade counts at its closing fill's time (``ts``),
   so ``until_ms`` cuts it as the candles are cut.
4. Sessions that traded the same bars with the same champion (a paper session beside a live
   one, a replay) made the same trades: one outcome per symbol, closing time and probability.
"""

from __future__ import annotations

import polars as pl
from sqlalchemy import select

from tradeloop.ops import OpsStore, TradingSession
from tradeloop.ops.adaptation import entry_probabilities, trade_fills
from tradeloop.thresholds.feedback import closed_trades

SCHEMA = {"ts": pl.Int64, "symbol": pl.String, "proba": pl.Float64, "label": pl.Int64}


def session_outcomes(store: OpsStore, *, strategy: str, artifact: str, until_ms: int | None = None) -> pl.DataFrame:
    """``ts, symbol, proba, label`` of the closed trades the ``artifact`` of ``strategy``
    entered in the sessions (module rules), oldest first."""
    rows: list[tuple[int, str, float, int]] = []
    with store.transaction() as db:
        sessions = db.scalars(
            select(TradingSession.id).where(TradingSession.strategy == strategy, TradingSession.in_sample.is_(False))
        ).all()
        for sid in sessions:
            probabilities = entry_probabilities(db, sid, artifact=artifact)
            if not probabilities:
                continue
            for t in closed_trades(trade_fills(db, sid), probabilities):
                if until_ms is None or t.closed_ts <= until_ms:
                    rows.append((t.closed_ts, t.symbol, t.probability, int(t.net_return > 0)))
    frame = pl.DataFrame(rows, schema=SCHEMA, orient="row").sort("ts", "symbol")
    return frame.unique(subset=["ts", "symbol", "proba"], keep="first", maintain_order=True)  # rule 4
