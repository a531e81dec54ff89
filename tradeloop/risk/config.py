"""Risk limits: frozen, validated, stored with the session as JSON (``model_dump``).

Every limit is optional: ``None`` turns it off. The defaults are what a desk would leave on
for a spot account whatever its size, and none of them binds in ordinary paper trading of a
long-only strategy that sizes entries at ``fraction <= 1`` of equity:

* Absolute quote limits (``max_order_notional``, ``max_position_notional``) are off: they
  depend on the account's size, so a session sets them (e.g. 5_000 USDT an order).
* Exposure caps (``max_gross_exposure``, ``max_net_exposure``) are off. Entries ask for
  ``fraction * equity`` each and the fill caps them at the cash left (the backtest's rule 2),
  so two symbols entering on one bar at ``fraction=1`` *ask* for 2x equity while the account
  never *holds* more than 1x; a 1.0 cap would refuse the second entry that the backtest
  fills with what cash is left. Set them for margin or perpetual accounts (e.g. 3.0 gross,
  1.0 net), or for spot when entries are sized to fit together (``fraction <= 1/symbols``).
* ``max_orders=200`` per ``throttle_window_ms=60_000`` of bar time: a runaway guard (a
  strategy re-sending every bar), far above the two orders per symbol a bar can produce.
* ``price_band=0.10``: a limit price (or reference price) more than 10% away from the last
  trade is a fat finger. Market orders priced at the bar's close never trip it.
* ``daily_loss_limit=0.15`` and ``max_drawdown=0.30``: kill-switch levels loose enough for
  crypto held at full size. Over the bundled sample's last 30 days (what ``tradeloop up``
  replays) a full ETH position lost at most 12.2% in a UTC day (so 10% would have tripped)
  and drew down 20.6%. Over years every limit trips (BTC lost more than 15% in a day 11
  times since 2016): a multi-year research backtest turns them off (``None``).
* ``flatten_on_kill=False``: a tripped switch refuses entries; closing positions is a human
  decision unless asked for.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tradeloop.errors import config_error


class RiskConfig(BaseModel):
    """Pre-trade limits and kill-switch levels (``tradeloop.risk.checks`` lists the rules)."""

    # infinity and NaN are refused: a JSON ``Infinity`` would silently turn a limit off
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    max_order_notional: float | None = Field(
        default=None,
        gt=0,
        description="largest entry order in quote currency, e.g. 5000.0 = 5,000 USDT an order",
        examples=[5000.0],
    )
    max_position_notional: float | None = Field(
        default=None,
        gt=0,
        description="largest |position| per instrument in quote after the order, e.g. 20000.0",
        examples=[20000.0],
    )
    max_gross_exposure: float | None = Field(
        default=None,
        gt=0,
        description="sum of |quantity * price| after the order, a multiple of equity: 1.0 = no leverage",
        examples=[1.0, 3.0],
    )
    max_net_exposure: float | None = Field(
        default=None,
        gt=0,
        description="|sum of quantity * price| after the order, a multiple of equity, e.g. 1.0",
        examples=[1.0],
    )
    max_open_positions: int | None = Field(
        default=None, ge=1, le=1_000_000, description="most instruments held at once, e.g. 5", examples=[5]
    )
    max_orders: int | None = Field(
        default=200,
        ge=1,
        le=1_000_000,
        description="most orders per throttle_window_ms of bar time, counted at their decision bars, e.g. 200",
        examples=[200],
    )
    throttle_window_ms: int = Field(
        default=60_000,
        ge=1,
        le=366 * 86_400_000,
        description="the throttle's window in milliseconds of bar time, e.g. 60000 = one minute",
        examples=[60_000],
    )
    price_band: float | None = Field(
        default=0.10,
        gt=0,
        lt=1,
        description="largest distance of an entry's price from the last trade price, a fraction: 0.1 = 10%",
        examples=[0.1],
    )
    check_market_rules: bool = Field(
        default=True,
        description="round amounts down to the market's step and refuse orders under its minimums (MarketRules)",
    )
    daily_loss_limit: float | None = Field(
        default=0.15,
        gt=0,
        lt=1,
        description="kill switch: loss from the equity at the start of the UTC day, a fraction: 0.15 = 15%",
        examples=[0.15],
    )
    max_drawdown: float | None = Field(
        default=0.30,
        gt=0,
        lt=1,
        description="kill switch: drop of equity from its high-water mark, a fraction: 0.3 = 30%",
        examples=[0.3],
    )
    flatten_on_kill: bool = Field(
        default=False, description="when the kill switch trips, also close every position (FLATTEN intents)"
    )
    bypass: bool = Field(
        default=False,
        description="tests only: approve every intent unchanged and never trip the kill switch",
    )

    @model_validator(mode="after")
    def _consistent(self) -> RiskConfig:
        gross, net = self.max_gross_exposure, self.max_net_exposure
        if gross is not None and net is not None and net > gross:
            raise ValueError(
                f"max_net_exposure={net:g} exceeds max_gross_exposure={gross:g}, but net exposure can never "
                f"exceed gross; set max_net_exposure <= {gross:g} or leave it None"
            )
        daily, dd = self.daily_loss_limit, self.max_drawdown
        if daily is not None and dd is not None and daily >= dd:
            raise ValueError(
                f"daily_loss_limit={daily:g} >= max_drawdown={dd:g}: a day's loss is also a drawdown, so the "
                f"daily limit could never trip first; set daily_loss_limit below {dd:g} or leave one None"
            )
        if self.flatten_on_kill and daily is None and dd is None:
            raise ValueError(
                "flatten_on_kill=True but there is no kill switch to trip; set daily_loss_limit or max_drawdown"
            )
        return self

    @classmethod
    def parse(cls, data: dict[str, Any]) -> RiskConfig:
        """A config from stored or user-given options; raises ``ConfigError`` naming each bad
        field, its value and the fix (pydantic's ``ValidationError`` stops here)."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise config_error(exc, what="risk config", model=cls) from None
