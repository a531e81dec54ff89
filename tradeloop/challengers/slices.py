"""Capital slices: a real A/B split of one session's capital between its champion and the
challengers named with a ``capital_share`` (``live.slices`` trades them).

Rules:

1. **Shares.** A challenger named with ``capital_share`` ``s`` (in (0, 0.5]) trades a slice of
   ``s`` of the session's equity; the champion trades the rest, ``1 - sum of the open slices'
   shares`` (:func:`champion_share`). Named shares together may not pass 0.5: the champion
   always keeps at least half (``ChallengerStore.add`` refuses more).
2. **Risk limits of a slice** (:func:`slice_risk_config`): the session's ``RiskConfig`` with
   every limit that is an *amount of money* scaled by the slice's share:
   ``max_order_notional`` and ``max_position_notional`` times ``s``. Limits that are
   *fractions of equity* (``max_gross_exposure``, ``max_net_exposure``, ``daily_loss_limit``,
   ``max_drawdown``) are kept: measured against the slice's own equity, which is ``s`` of the
   session's, they already are that fraction of the slice's money. Counts
   (``max_open_positions``, ``max_orders``) and the price band are kept whole: a count does
   not divide (one fifth of 5 positions is not a position), and the session's own check on
   the combined intents holds the total. ``bypass``, ``check_market_rules`` and the throttle
   window are the session's.
3. **Two checks.** Each slice's intents are judged against its own book and its own limits;
   the intents every slice approved are then judged together against the whole session's
   book (the sum of the slices) and the session's limits and risk state (its throttle, its
   kill switch). An intent is sent only when both approve it.
4. **Where a split trades** (:func:`check_split`): paper sessions, and live sessions on one spot
   venue (one account the books share: every fill attributed to the book whose order it is, the
   balances compared with the sum of the books, ``live.slices``). A live session with a
   derivative (perpetuals: the venue nets every book's position into one, and its funding and
   liquidation are per position) or on several venues (balances per venue) is refused.
"""

from __future__ import annotations

from collections.abc import Iterable

from tradeloop.errors import ConfigError
from tradeloop.risk import RiskConfig
from tradeloop.trading.session_keys import instrument_of, split_key

__all__ = ["MAX_TOTAL_SHARE", "champion_share", "check_split", "slice_risk_config"]

MAX_TOTAL_SHARE = 0.5  # the challengers' slices together (rule 1)


def champion_share(shares: Iterable[float]) -> float:
    """The champion's share: what the challengers' open slices leave (rule 1)."""
    return 1.0 - sum(shares)


def slice_risk_config(config: RiskConfig, share: float) -> RiskConfig:
    """The limits of a slice trading ``share`` of the session's capital (rule 2).

    Raises
    ------
    ConfigError
        ``share`` is not in (0, 1].
    """
    if not 0.0 < share <= 1.0:
        raise ConfigError(f"slice share={share} is out of range; give a fraction in (0, 1], e.g. 0.2")
    scaled = {
        name: getattr(config, name) * share
        for name in ("max_order_notional", "max_position_notional")
        if getattr(config, name) is not None
    }
    return config.model_copy(update=scaled)


def check_split(*, mode: str, exchange: str, symbols: Iterable[str], share: float) -> None:
    """Refuse a ``capital_share`` where a split cannot trade (rule 4).

    Raises
    ------
    ConfigError
        A live session with a derivative symbol or a symbol on another venue.
    """
    if mode == "paper":
        return
    keys = list(symbols)
    derivatives = [k for k in keys if instrument_of(exchange, k).is_derivative]
    if derivatives:
        raise ConfigError(
            f"capital_share={share}: live session on {exchange} trades derivatives {derivatives}: the venue nets "
            "every book's position into one (reduce-only exits, funding and liquidation are per position), so a "
            "split cannot keep the books apart; name the challenger without capital_share (shadow), or split a "
            "spot or paper session"
        )
    others = [k for k in keys if split_key(k)[0] not in (None, exchange)]
    if others:
        raise ConfigError(
            f"capital_share={share}: live session trades {others} on venues other than {exchange}; a split "
            "compares one venue's balances with the books: name the challenger without capital_share (shadow), "
            "or split a session on one spot venue"
        )
