"""What a trading session is doing now, from its stored status and its engine's heartbeat.

One definition for every reader (``tradeloop live sessions``, the dashboard):

* ``stopped``: an operator ran ``tradeloop live stop`` (final).
* ``finished``: a replay without ``--follow`` reached the end of its data. ``live run`` with
  the same name resumes it when the lake has grown (it is ``running`` again meanwhile).
* ``running`` / ``paused``: stored so, and the engine's heartbeat (``sessions.heartbeat_at``,
  written with every bar and every ``heartbeat_s`` while it waits for one) is younger than
  ``stale_after_s``.
* ``stale``: stored running or paused, but no engine is alive for it: the heartbeat is old
  (crashed or hung engine, operational database unreachable) or absent (the engine exited;
  ``tradeloop live run --name ...`` resumes it).

The readers pass ``now``; nothing here reads the clock.

A session of strategy :data:`ARBITRAGE` (``live.arbitrage_paper``: the paper legs of
cross-venue arbitrage) is no strategy over bars: its ``config`` is no ``BacktestConfig``, its
books are several venues' balances, its equity points are its pre-funded quote asset plus the
realised PnL of its pairs. Readers that need a backtest config or bars (the sizing words, the
backtest on the session's terms, candles, decisions) test :func:`is_arbitrage` and skip or
label it.
"""

from __future__ import annotations

from datetime import UTC, datetime

STALE_AFTER_S = 180.0  # six missed heartbeats at the engine's default 30 s
DISPLAY_STATUSES = ("running", "paused", "stale", "finished", "stopped")
ARBITRAGE = "arbitrage"  # the strategy of a paper-arbitrage session (module docstring)


def is_arbitrage(strategy: str) -> bool:
    """A session of this strategy holds paper-arbitrage books, not a ``BacktestConfig``."""
    return strategy == ARBITRAGE


def arbitrage_terms(config: dict) -> str:
    """A paper-arbitrage session's stored terms in words (its ``config``, ``live.arbitrage_session``)."""
    paper = config.get("arbitrage_paper") or {}
    fees = ", ".join(f"{v} {r:.3%}" for v, r in sorted((config.get("taker_fees") or {}).items()))
    inventory = "; ".join(
        f"{venue}: " + ", ".join(f"{a} {x:g}" for a, x in sorted(held.items()))
        for venue, held in sorted((paper.get("inventory") or {}).items())
    )
    return (
        f"paper arbitrage: at most {paper.get('max_notional', 0):,.2f} {config.get('quote', '')} a pair "
        "(fee included), "
        f"taker fees {fees or '-'}, pre-funded {inventory or '-'}"
    )


def session_status(
    stored: str, heartbeat_at: datetime | None, *, now: datetime, stale_after_s: float = STALE_AFTER_S
) -> str:
    """The status to show for a session stored as ``stored`` whose engine last beat at
    ``heartbeat_at`` (None: no engine is running it)."""
    if stored in ("stopped", "finished"):
        return stored
    if heartbeat_at is None:
        return "stale"
    if heartbeat_at.tzinfo is None:  # SQLite hands back naive datetimes; they were written in UTC
        heartbeat_at = heartbeat_at.replace(tzinfo=UTC)
    age = (now - heartbeat_at).total_seconds()
    return stored if age <= stale_after_s else "stale"


IN_SAMPLE_WARNING = (
    "trades bars its champion was trained on (started with --allow-in-sample): its results are "
    "not evidence of how the model does on new data"
)


def sample_label(in_sample: bool) -> str:
    """How a session's ``in_sample`` flag reads wherever a session is shown."""
    return "IN-SAMPLE" if in_sample else "out-of-sample"
