"""What the risk engine remembers between bars, and the kill switch.

Time is the bar's timestamp in epoch milliseconds (the candle's open time, as everywhere in
tradeloop), passed in; nothing here reads the wall clock. Rules:

1. **UTC day.** A bar belongs to day ``ts // 86_400_000``. Bars come in time order; a bar
   of an earlier day than the one on record is refused (``RiskError``).
2. **Start-of-day equity.** The first equity ever seen starts its day. When a bar of a later
   day arrives, the day's start equity is the *previous* equity seen (the close of the last
   bar before it, which is the equity at the new day's first open), not this bar's: the
   first bar's own move counts toward the day's loss. After a gap of days it is the last
   equity seen before the gap.
3. **High-water mark** = the largest equity seen (this bar's included).
4. **Kill switch**, checked by :meth:`RiskState.on_equity` with the equity at each bar's
   close, after rules 2-3: daily loss ``1 - equity / day_start`` reaching
   ``daily_loss_limit`` trips it (skipped while the day's start equity is not positive);
   else drawdown ``1 - equity / high_water`` reaching ``max_drawdown`` does. Reaching means
   at the limit or beyond (``tradeloop.risk.records.reaches``). ``on_equity`` returns the
   :class:`KillSwitchTrip` on the bar it trips and ``None`` otherwise; once tripped it stays
   tripped (later bars still update the day and the mark) until :meth:`acknowledge`.
5. **Acknowledge** accepts the loss: it clears the trip and restarts both limits from the
   last equity seen (it becomes the high-water mark and the day's start equity), so trading
   resumes and a further loss of the limit trips again.
6. **Throttle memory.** :meth:`record_order` keeps the decision bar timestamps of the last
   ``max_orders`` orders (a bounded deque: that many are enough to tell whether
   ``max_orders`` fall in the window); nothing is kept when the throttle is off.
   :meth:`orders_in_window` counts those with ``ts - throttle_window_ms < t <= ts``.
7. ``bypass`` updates the day and the mark but never trips.

``to_json``/``from_json`` store all of it (not the config, stored beside it) so a restarted
session keeps its day, mark, throttle memory and trip.
"""

from __future__ import annotations

import json
import math
from collections import deque
from typing import Any

from tradeloop.errors import RiskError
from tradeloop.risk.config import RiskConfig
from tradeloop.risk.limits import APPROVED, kill_switch_rule
from tradeloop.risk.records import KillSwitchTrip, RiskRule

DAY_MS = 86_400_000
_VERSION = 1


class RiskState:
    """The risk engine's memory for one session (mutable; see the module's rules).

    Parameters
    ----------
    config
        The session's limits; the state reads ``daily_loss_limit``, ``max_drawdown``,
        ``max_orders``, ``throttle_window_ms`` and ``bypass`` from it.
    """

    __slots__ = ("config", "day", "day_start_equity", "high_water", "last_equity", "order_ts", "tripped")

    def __init__(self, config: RiskConfig) -> None:
        self.config = config
        self.day: int | None = None
        self.day_start_equity: float | None = None
        self.last_equity: float | None = None
        self.high_water: float | None = None
        self.order_ts: deque[int] = deque(maxlen=config.max_orders or 0)
        self.tripped: KillSwitchTrip | None = None

    # ------------------------------------------------------------------ kill switch
    def on_equity(self, ts: int, equity: float) -> KillSwitchTrip | None:
        """Take the equity at the close of bar ``ts``; the trip when this bar trips the switch.

        Raises
        ------
        RiskError
            When ``equity`` is not finite or ``ts`` falls on a day before the one on record.
        """
        if not math.isfinite(equity):
            raise RiskError(f"risk state: equity {equity!r} at bar {ts} is not a number; mark positions first")
        day = ts // DAY_MS
        if self.day is None or self.last_equity is None:
            self.day, self.day_start_equity = day, equity
        elif day > self.day:
            self.day, self.day_start_equity = day, self.last_equity
        elif day < self.day:
            raise RiskError(f"risk state: bar {ts} falls on UTC day {day}, before day {self.day} already seen")
        self.last_equity = equity
        self.high_water = equity if self.high_water is None else max(self.high_water, equity)
        if self.tripped is not None or self.config.bypass:
            return None
        self.tripped = self._breach(ts, equity)
        return self.tripped

    def _breach(self, ts: int, equity: float) -> KillSwitchTrip | None:
        cfg = self.config
        code, reference, value, limit = kill_switch_rule(
            equity,
            math.nan if self.day_start_equity is None else self.day_start_equity,
            math.nan if self.high_water is None else self.high_water,
            math.nan if cfg.daily_loss_limit is None else cfg.daily_loss_limit,
            math.nan if cfg.max_drawdown is None else cfg.max_drawdown,
        )
        if code == APPROVED:
            return None
        rule = RiskRule.of(code)
        if rule is RiskRule.DAILY_LOSS:
            message = (
                f"equity {equity:.2f} is {value:.2%} below the day's start {reference:.2f} "
                f"(daily_loss_limit {limit:.2%})"
            )
        else:
            message = (
                f"equity {equity:.2f} is {value:.2%} below its high-water mark {reference:.2f} "
                f"(max_drawdown {limit:.2%})"
            )
        return KillSwitchTrip(
            rule=rule, ts=ts, equity=equity, reference=reference, value=value, limit=limit, message=message
        )

    def acknowledge(self) -> KillSwitchTrip | None:
        """Clear the trip and restart both limits from the last equity seen (rule 5); returns
        the trip that was cleared (``None`` when none was)."""
        trip, self.tripped = self.tripped, None
        if self.last_equity is not None:
            self.high_water = self.day_start_equity = self.last_equity
        return trip

    @property
    def drawdown(self) -> float:
        """``1 - last equity / high-water mark`` (0 before any equity)."""
        if self.last_equity is None or not self.high_water or self.high_water <= 0:
            return 0.0
        return 1.0 - self.last_equity / self.high_water

    # ------------------------------------------------------------------ throttle
    def record_order(self, ts: int) -> None:
        """Count an order decided at bar ``ts`` toward the throttle (rule 6)."""
        self.order_ts.append(ts)

    def orders_in_window(self, ts: int) -> int:
        """Orders recorded at bar timestamps in ``(ts - throttle_window_ms, ts]``."""
        start = ts - self.config.throttle_window_ms
        return sum(1 for t in self.order_ts if start < t <= ts)

    # ------------------------------------------------------------------ storage
    def to_json(self) -> str:
        """The state as JSON text (the config is stored beside it, not in it)."""
        return json.dumps(
            {
                "version": _VERSION,
                "day": self.day,
                "day_start_equity": self.day_start_equity,
                "last_equity": self.last_equity,
                "high_water": self.high_water,
                "order_ts": list(self.order_ts),
                "tripped": self.tripped.detail() if self.tripped is not None else None,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, *, config: RiskConfig) -> RiskState:
        """The state :meth:`to_json` wrote, under ``config`` (a smaller ``max_orders`` keeps the
        newest timestamps).

        Raises
        ------
        RiskError
            When ``text`` is not a stored risk state.
        """
        try:
            data: dict[str, Any] = json.loads(text)
            if not isinstance(data, dict) or data.get("version") != _VERSION:
                raise ValueError(f"not a version {_VERSION} risk state")
            state = cls(config)
            state.day = None if data["day"] is None else int(data["day"])
            state.day_start_equity = _opt_float(data["day_start_equity"])
            state.last_equity = _opt_float(data["last_equity"])
            state.high_water = _opt_float(data["high_water"])
            state.order_ts.extend(int(t) for t in data["order_ts"])
            state.tripped = None if data["tripped"] is None else KillSwitchTrip.from_detail(data["tripped"])
        except (ValueError, KeyError, TypeError) as exc:
            raise RiskError(f"stored risk state does not parse ({exc}); it was written by RiskState.to_json") from None
        return state

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RiskState):
            return NotImplemented
        return self.to_json() == other.to_json() and self.config == other.config

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RiskState({self.to_json()})"


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
