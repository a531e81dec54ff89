"""In-sample guard: a new session must not trade bars its champion was trained on.

A session's first bar is the replay's first candle (at or after ``start``) or, for the
ccxt feed, the wall clock when the session is created. When that bar lies at or before
the champion's ``trained_until`` (the last bar whose label the model saw), the session's
results would replay the training data and say nothing about new data: it is refused
(ConfigError, exit 2, naming both times and the fixes) unless ``allow_in_sample``; then it
is created with ``in_sample=True`` and an audit row ``session_in_sample``, and every place
that shows it says so. Without a champion there is nothing to check. A resumed session
keeps the flag it was created with. (The engine's model slot also refuses, bar by bar, a
champion trained past the bar unless the session is in-sample.)

One definition for ``tradeloop live run`` (``live.runner``) and ``POST /sessions`` (``api``):
both create sessions through ``tradeloop.ops.session_spec.create_session``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from tradeloop.data import timeframe_ms
from tradeloop.errors import ConfigError
from tradeloop.ops.champion_log import iso_utc

if TYPE_CHECKING:
    from tradeloop.ops.session_spec import SessionSpec

log = logging.getLogger(__name__)


def first_bar(config: SessionSpec, first_bar_ms: int | None) -> int | None:
    """``first_bar_ms`` when known (the runner passes the replay's first candle), else
    ``config.start``, else now for the ccxt feed (None: a replay with no start: unknown)."""
    if first_bar_ms is not None:
        return first_bar_ms
    if config.feed in ("ccxt", "bus"):  # live candles: from now
        return int(time.time() * 1000)
    return config.start


def in_sample_detail(
    config: SessionSpec, *, first_bar_ms: int | None, trained_until_ms: int | None, artifact: str | None
) -> dict | None:
    """None when the session starts after the champion's training end (or there is no
    champion, or no known first bar); the ``session_in_sample`` audit detail when it starts
    at or before it and ``config.allow_in_sample``; a ConfigError otherwise."""
    if trained_until_ms is None or first_bar_ms is None or first_bar_ms > trained_until_ms:
        return None
    if not config.allow_in_sample:
        after = trained_until_ms + timeframe_ms(config.timeframe)
        how = (
            "wait until the venue's bars are newer than the training end"
            if config.feed in ("ccxt", "bus")
            else f"replay only new bars with --start {iso_utc(after)} (the first bar after the training end)"
        )
        raise ConfigError(
            f"session {config.name!r} would start at {iso_utc(first_bar_ms)} (its first bar), at or before the "
            f"{config.strategy} champion's training end {iso_utc(trained_until_ms)}: it would trade bars the "
            f"model was trained on, and its results would say nothing about new data. Fix: {how}, or pass "
            "--allow-in-sample to run it anyway, marked in-sample everywhere it is shown"
        )
    log.warning(
        "session %r starts at %s, within its champion's training data (until %s): marked in-sample",
        config.name,
        iso_utc(first_bar_ms),
        iso_utc(trained_until_ms),
    )
    return {
        "first_bar_ms": first_bar_ms,
        "trained_until_ms": trained_until_ms,
        "artifact": artifact,
        "strategy": config.strategy,
    }
