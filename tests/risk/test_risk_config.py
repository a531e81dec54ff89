"""RiskConfig: defaults that do not bind in ordinary paper trading, JSON round trip, and
validation messages that name the field and the fix."""

import json

import pytest
from pydantic import ValidationError

from tests.risk.helpers import BTC, DAY, ETH, H, buy
from tradeloop.errors import ConfigError
from tradeloop.risk import PortfolioSnapshot, RiskConfig, RiskState, check_batch


def test_defaults_are_documented_values() -> None:
    cfg = RiskConfig()
    assert (cfg.daily_loss_limit, cfg.max_drawdown, cfg.price_band) == (0.15, 0.30, 0.10)
    assert (cfg.max_orders, cfg.throttle_window_ms) == (200, 60_000)
    off = (cfg.max_order_notional, cfg.max_position_notional, cfg.max_gross_exposure, cfg.max_net_exposure)
    assert off == (None, None, None, None) and cfg.max_open_positions is None
    assert cfg.check_market_rules and not cfg.flatten_on_kill and not cfg.bypass


def test_defaults_do_not_bind_a_long_only_spot_session() -> None:
    """Two symbols entering on one bar at fraction=1 each ask for all the equity (the fill caps
    them at the cash left); a -12% day and a -25% drawdown do not trip the switch."""
    st = RiskState(RiskConfig())
    flat = PortfolioSnapshot(equity=10_000.0, cash=10_000.0, prices={BTC: 100.0, ETH: 50.0})
    entries = [buy(BTC, quote=10_000.0, ref=100.0), buy(ETH, quote=10_000.0, ref=50.0)]
    assert all(r.approved for r in check_batch(entries, flat, state=st, ts=0))
    for t, equity in enumerate((10_000.0, 8_800.0, 9_500.0, 8_600.0, 7_500.0)):
        assert st.on_equity(t * DAY + H, equity) is None


def test_model_dump_round_trips_through_json() -> None:
    cfg = RiskConfig(max_order_notional=5000.0, max_gross_exposure=3.0, max_net_exposure=1.0, max_open_positions=4)
    stored = json.dumps(cfg.model_dump())
    assert RiskConfig.model_validate(json.loads(stored)) == cfg
    assert RiskConfig.parse(json.loads(stored)) == cfg
    assert RiskConfig.model_validate_json(cfg.model_dump_json()) == cfg


def test_frozen() -> None:
    with pytest.raises(ValidationError):
        RiskConfig().max_drawdown = 0.5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (
            {"max_gross_exposure": 1.0, "max_net_exposure": 2.0},
            ["max_net_exposure=2 exceeds max_gross_exposure=1", "set max_net_exposure <= 1"],
        ),
        (
            {"daily_loss_limit": 0.3, "max_drawdown": 0.3},
            ["daily_loss_limit=0.3 >= max_drawdown=0.3", "set daily_loss_limit below 0.3"],
        ),
        (
            {"flatten_on_kill": True, "daily_loss_limit": None, "max_drawdown": None},
            ["flatten_on_kill=True", "set daily_loss_limit or max_drawdown"],
        ),
        ({"price_band": 1.5}, ["price_band=1.5", "less than 1", "0.1 = 10%"]),
        ({"max_order_notional": -5}, ["max_order_notional=-5", "greater than 0", "e.g. 5000.0"]),
        ({"max_orders": 0}, ["max_orders=0", "greater than or equal to 1"]),
        ({"max_drawdwn": 0.2}, ["max_drawdwn=0.2 is unknown", "did you mean 'max_drawdown'"]),
    ],
)
def test_validation_names_the_field_and_the_fix(options: dict, says: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        RiskConfig.parse(options)
    message = str(err.value)
    assert message.startswith("risk config: ")
    for part in says:
        assert part in message, message
