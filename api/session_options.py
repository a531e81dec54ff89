"""A new session's options as ``POST /sessions`` takes them (:class:`NewSession`), every
problem with them at once (field, value, fix: :func:`new_session_spec`), the caller's
exchange credential a live one names (:func:`session_credential`), and the ``tradeloop live
run`` command that starts its engine (:func:`run_command`). ``api.routers.sessions`` serves them.
"""

from __future__ import annotations

import difflib
import shlex
from datetime import UTC, datetime
from typing import Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from api.context import ApiContext
from api.deps import Principal
from api.timequery import to_ms
from tradeloop.backtest import BacktestConfig
from tradeloop.data import SeriesKey
from tradeloop.data.schema import check_exchange, timeframe_ms
from tradeloop.errors import ConfigError, NotFoundError
from tradeloop.identity.credentials import CredentialStore
from tradeloop.ops.session_spec import (
    SET_ELSEWHERE,
    SessionSpec,
    check_window,
    order_rule_problems,
    risk_problems,
)
from tradeloop.risk import RiskConfig
from tradeloop.strategies import get_strategy
from tradeloop.thresholds import OnlineConfig
from tradeloop.trading.session_keys import several_venues, venues_of

Scalar = float | int | str | bool | None
Problems = list[tuple[str, Any, str]]  # (field, value, fix)
# `tradeloop live pause NAME` takes the name as an argument: no leading '-' (an option), no blanks
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
START_FIX = "epoch milliseconds (e.g. 1704067200000) or an ISO datetime (e.g. 2024-01-01T00:00:00Z)"


class NewSession(BaseModel):
    """A new paper trading session (``tradeloop live run``'s options for a new session)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(
        min_length=1,
        max_length=100,
        pattern=NAME_PATTERN,
        description="unique among all sessions; letters, digits and . _ - (not first), so the CLI reads it back",
        examples=["btc-paper"],
    )
    strategy: str = Field(default="sma_cross", description="whose champion trades", examples=["sma_cross"])
    exchange: str = Field(default="coinbase", description="the candles' exchange (a ccxt id)", examples=["coinbase"])
    symbols: list[str] = Field(
        default=["BTC-USD", "ETH-USD"], min_length=1, max_length=200, examples=[["BTC-USD", "ETH-USD"]]
    )
    timeframe: str = Field(default="4h", description="bar timeframe", examples=["4h"])
    mode: Literal["paper", "live"] = Field(
        default="paper", description="paper: the backtest's fill rules; live: real orders with `credential`"
    )
    credential: str | None = Field(
        default=None,
        max_length=100,
        description="live only: the name of your stored exchange credential (POST /credentials) it trades with",
        examples=[None],
    )
    feed: Literal["replay", "ccxt", "bus"] = Field(
        default="replay",
        description="replay: the lake's candles; ccxt: the exchange's, from now; bus: the market-data service's",
    )
    start: int | str | None = Field(
        default=None,
        description=f"a replay's first bar ({START_FIX}); default: the lake's first candle. Must lie after the "
        "champion's training end unless allow_in_sample",
        examples=["2024-06-01T00:00:00Z"],
    )
    end: int | str | None = Field(default=None, description=f"a replay's last bar ({START_FIX})")
    init_cash: float = Field(default=10_000.0, gt=0, le=1e12, description="starting cash in the quote currency")
    fraction: float = Field(default=0.5, gt=0, le=1.0, description="share of equity per new position")
    window_bars: int = Field(
        default=400, ge=10, le=100_000, description="bars of history per symbol each decision sees (the engine's)"
    )
    orders: dict[str, Scalar] = Field(
        default_factory=dict,
        description="order and sizing rules: BacktestConfig fields (stop_loss, take_profit, trailing_stop, atr_stop, "
        f"entry_order, limit_offset, sizing, vol_target, ...) except {', '.join(SET_ELSEWHERE)}",
        examples=[{"stop_loss": 0.05, "entry_order": "limit", "limit_offset": 0.002}],
    )
    risk: dict[str, Scalar] = Field(
        default_factory=dict,
        description="risk limits: RiskConfig fields (null turns one off; bypass is refused); the rest keep "
        "their defaults",
        examples=[{"max_drawdown": 0.2, "max_order_notional": 5000, "price_band": None}],
    )
    allow_in_sample: bool = Field(
        default=False, description="start at or before the champion's training end (marked in-sample)"
    )
    adapt_thresholds: bool = Field(
        default=False,
        description="adapt the champion's threshold from closed trades' outcomes (bounded, capped steps, "
        "minimum samples; freeze, unfreeze and revert it under /sessions/{id}/thresholds)",
    )

    @field_validator("start", "end", mode="before")
    @classmethod
    def _epoch_ms(cls, value: Any) -> int | None:
        """Epoch ms (the time's form in the stored session and the CLI)."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError(f"not a time; give {START_FIX}")
        try:
            return to_ms(str(value), field="start")
        except ConfigError:
            raise ValueError(f"not a time between 1970 and 9999; give {START_FIX}") from None


def _cli_time(ms: int) -> str:
    """How ``tradeloop live run --start`` reads ``ms`` back: epoch ms of 12 digits or more, else ISO."""
    return str(ms) if ms >= 10**11 else datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def _pydantic(exc: ValidationError, at: str, model: type[BaseModel]) -> Problems:
    """``(field, value, fix)`` of each error, the field under ``at`` (``body.orders``); an
    unknown option gets a did-you-mean from ``model``'s fields."""
    out = []
    for err in exc.errors():
        where = ".".join([at, *(str(p) for p in err["loc"])])
        fix = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            near = difflib.get_close_matches(str(err["loc"][-1]), list(model.model_fields), n=1)
            fix = "unknown option" + (f"; did you mean {near[0]!r}?" if near else "") + f" ({at} takes "
            fix += ", ".join(f for f in model.model_fields if f not in SET_ELSEWHERE and f != "bypass") + ")"
        out.append((where, err.get("input"), fix))
    return out


def _series_problems(body: NewSession) -> tuple[Any, Problems]:
    """The strategy (None when unknown) and the problems of the strategy, exchange, timeframe and symbols."""
    problems: Problems = []
    strategy = None
    try:
        strategy = get_strategy(body.strategy)
    except ConfigError as exc:
        problems.append(("body.strategy", body.strategy, str(exc)))
    for field, value, check in (
        ("body.exchange", body.exchange, check_exchange),
        ("body.timeframe", body.timeframe, timeframe_ms),
    ):
        try:
            check(value)
        except ConfigError as exc:
            problems.append((field, value, str(exc)))
    if not any(field == "body.exchange" for field, _, _ in problems):
        seen: dict[str, str] = {}
        for i, symbol in enumerate(body.symbols):
            try:
                key = SeriesKey(body.exchange, symbol, "1m")  # the symbol's form (the timeframe is checked above)
            except ConfigError as exc:
                problems.append((f"body.symbols.{i}", symbol, str(exc)))
                continue
            if key.symbol in seen:
                problems.append((f"body.symbols.{i}", symbol, f"names {seen[key.symbol]!r} again; give each once"))
            seen.setdefault(key.symbol, symbol)
    return strategy, problems


def _rules_problems(body: NewSession) -> tuple[BacktestConfig | None, RiskConfig, Problems]:
    """The order rules and risk limits as configs, and their problems (rules 2 and 3 of
    ``tradeloop.ops.session_spec``)."""
    names = {"init_cash": "the init_cash field", "fraction": "the fraction field"}
    problems: Problems = [
        (f"body.orders.{p.key}", p.value, p.fix) for p in order_rule_problems(body.orders, option="orders", names=names)
    ]
    backtest = None
    try:
        backtest = BacktestConfig(**{k: v for k, v in body.orders.items() if k not in SET_ELSEWHERE})
    except ValidationError as exc:
        problems += _pydantic(exc, "body.orders", BacktestConfig)
    refused = risk_problems(body.risk, example='"risk": {"max_drawdown": null}')
    problems += [(f"body.risk.{p.key}", p.value, p.fix) for p in refused]
    risk = RiskConfig()
    try:
        risk = RiskConfig.model_validate({k: v for k, v in body.risk.items() if k != "bypass"})
    except ValidationError as exc:
        problems += _pydantic(exc, "body.risk", RiskConfig)
    return backtest, risk, problems


def new_session_spec(body: NewSession) -> tuple[SessionSpec, Problems]:
    """The spec of a new session, and every problem with the options (none: it may be created)."""
    problems: Problems = []
    if body.mode == "live" and body.credential is None:
        fix = "a live session trades with one of your stored exchange credentials: name it in credential"
        problems.append(("body.credential", None, fix + " (store one with POST /credentials), or use mode=paper"))
    if body.mode == "live" and body.feed == "replay":
        fix = "a live session sends real orders: decide on the exchange's candles (feed=ccxt) or the market-data "
        problems.append(("body.feed", body.feed, fix + "service's (feed=bus), or replay the lake on paper"))
    problems += _venue_problems(body)
    if body.mode == "paper" and body.credential is not None:
        problems.append(("body.credential", body.credential, "a paper session sends no order: drop credential"))
    strategy, found = _series_problems(body)
    backtest, risk, wrong = _rules_problems(body)
    problems += found + wrong
    if strategy is not None:
        try:
            check_window(strategy, body.window_bars, backtest=backtest)
        except ConfigError as exc:
            problems.append(("body.window_bars", body.window_bars, str(exc).replace("--window-bars", "window_bars")))
    start, end = cast(int | None, body.start), cast(int | None, body.end)  # epoch ms once validated
    if start is not None and end is not None and end < start:
        problems.append(("body.end", body.end, f"end is before start ({body.start}); give end >= start"))
    symbols = tuple(dict.fromkeys(body.symbols))  # a repeat is one of the problems above
    spec = SessionSpec(
        name=body.name, strategy=body.strategy, exchange=body.exchange, symbols=symbols,
        timeframe=body.timeframe, mode=body.mode, feed=body.feed, start=start, end=end, init_cash=body.init_cash,
        fraction=body.fraction, orders=dict(body.orders), risk=risk, allow_in_sample=body.allow_in_sample,
        adapt_thresholds=OnlineConfig() if body.adapt_thresholds else None,
    )  # fmt: skip
    return spec, problems


def _venue_problems(body: NewSession) -> Problems:
    """A live session made here trades with one stored credential, one venue's account: its
    symbols must all be on its exchange (``tradeloop.trading.session_keys``); the engine would
    refuse one on several venues at its start (``live.session_brokers``), so it is refused now."""
    if body.mode != "live":
        return []
    try:
        venues = sorted(venues_of(body.exchange, body.symbols))
        several = several_venues(body.exchange, body.symbols)
    except ConfigError as exc:
        return [("body.symbols", list(body.symbols), str(exc))]
    if not several:
        return []
    fix = (
        f"a live session made here trades with one stored credential, one {body.exchange} account, but these symbols "
        f"are on {venues}: list {body.exchange} symbols only (plain, e.g. BTC-USDT), or trade several venues on paper "
        "(mode=paper); a live session on several venues runs on the engine host's keys per venue "
        "(`tradeloop live run --mode live`, TRADELOOP_VENUES__<VENUE>__API_KEY)"
    )
    return [("body.symbols", list(body.symbols), fix)]


def session_credential(ctx: ApiContext, principal: Principal, body: NewSession) -> tuple[int | None, Problems]:
    """The id of the caller's credential ``body.credential``, or the problem with it."""
    assert body.credential is not None
    try:
        info = CredentialStore(ctx.store).by_name(user_id=principal.user_id, name=body.credential)
    except NotFoundError as exc:
        return None, [("body.credential", body.credential, str(exc))]
    if info.exchange != body.exchange:
        fix = f"it is a {info.exchange} account; name a credential of {body.exchange}, or trade on {info.exchange}"
        return None, [("body.credential", body.credential, fix)]
    return info.id, []


def run_command(spec: SessionSpec, *, window_bars: int, in_sample: bool) -> str:
    """The ``tradeloop live run`` that starts an engine on the session (and resumes it later)."""
    words = ["tradeloop", "live", "run", "--name", spec.name, "--strategy", spec.strategy, "--exchange", spec.exchange]
    for symbol in spec.symbols:
        words += ["--symbol", symbol]
    words += ["--timeframe", spec.timeframe, "--window-bars", str(window_bars)]
    if spec.feed != "replay":
        words += ["--feed", spec.feed]
    if spec.start is not None:
        words += ["--start", _cli_time(spec.start)]
    if spec.end is not None:
        words += ["--end", _cli_time(spec.end)]
    if in_sample:
        words.append("--allow-in-sample")
    return shlex.join(words)
