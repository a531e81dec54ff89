"""A new trading session: what it is stored with. One definition for ``tradeloop live run``
(``live.runner.open_session``) and ``POST /sessions`` (``api.routers.sessions``), so a
session made through the API resumes under ``tradeloop live run --name NAME`` exactly like
one the CLI made.

Rules:

1. A session is created from a :class:`SessionSpec`; the engine's own options (replay
   speed, window, feed staleness, perpetuals' leverage) are ``live.runner.SessionConfig``'s,
   which extends it.
2. Its stored ``config`` is the ``BacktestConfig`` of ``init_cash``, ``fraction``,
   ``slippage``, ``fee_rate`` (default: half the champion's round-trip cost; 0.001 without a
   champion) and ``cash_sharing=True``, overlaid with the order rules (``orders``: any other
   ``BacktestConfig`` field). A user may not set the fields of :data:`SET_ELSEWHERE` as order
   rules: :func:`order_rule_problems` names what sets each.
3. Its ``risk_config`` is ``risk`` (``tradeloop.risk.RiskConfig``) as JSON. A user-given risk
   config may not ask for ``bypass`` (every limit and the kill switch off: tests only):
   :func:`risk_problems`.
4. What the live engine can trade (:func:`check_live_config`) and the window each decision
   sees (:func:`check_window`) are checked before any row is written.
5. A new session whose first bar lies at or before its champion's training end is refused
   unless ``allow_in_sample`` (``tradeloop.ops.in_sample``).
6. The row and its ``session_started`` audit row (with the actor who asked, and the owner)
   are written in one transaction by ``OpsStore.create_session``.
7. ``adapt_thresholds`` (an ``OnlineConfig``; None: off) is stored in that transaction as an
   audit row ``threshold_adaptation_on`` (``tradeloop.ops.adaptation``): the session's
   ``config`` holds ``BacktestConfig`` fields only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tradeloop.backtest import BacktestConfig
from tradeloop.data import CandleLake, SeriesKey, earliest
from tradeloop.errors import ConfigError, DataError, ModelError, config_error
from tradeloop.ops.in_sample import first_bar, in_sample_detail
from tradeloop.ops.models import TradingSession
from tradeloop.ops.store import OpsStore
from tradeloop.registry import ModelRegistry
from tradeloop.risk import RiskConfig
from tradeloop.thresholds.online import OnlineConfig
from tradeloop.thresholds.warmup import min_window_bars

#: ``BacktestConfig`` fields that are not order rules: what sets each instead (rule 2)
SET_ELSEWHERE: dict[str, str] = {
    "init_cash": "init_cash",
    "fraction": "fraction",
    "fee_rate": "the champion's costs",
    "slippage": "the session config",
    "cash_sharing": "(one portfolio per session)",
}


class SessionSpec(BaseModel):
    """What a new trading session is made of (``tradeloop live run --help`` lists the options)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    strategy: str = "sma_cross"
    exchange: str = "coinbase"
    symbols: tuple[str, ...] = ("BTC-USD", "ETH-USD")
    timeframe: str = "4h"
    mode: str = Field(default="paper", pattern="^(paper|live)$")
    feed: str = Field(default="replay", pattern="^(replay|ccxt|bus)$")
    start: int | None = None
    end: int | None = None
    init_cash: float = Field(default=10_000.0, gt=0)
    fraction: float = Field(default=0.5, gt=0, le=1.0)
    fee_rate: float | None = Field(default=None, ge=0, lt=0.1, description="default: the champion's cost / 2")
    slippage: float = Field(default=0.0, ge=0, lt=0.1)
    orders: dict[str, Any] = Field(
        default_factory=dict,
        description="order and sizing rules of a new session, BacktestConfig fields (stop_loss, take_profit, "
        "trailing_stop, atr_stop, atr_trailing, entry_order, limit_offset, sizing, vol_target, ...), "
        "e.g. {'stop_loss': 0.05, 'entry_order': 'limit', 'limit_offset': 0.002}",
    )
    risk: RiskConfig = Field(
        default_factory=RiskConfig,
        description="pre-trade limits and kill switch (tradeloop.risk.RiskConfig), stored with a new session",
    )
    allow_in_sample: bool = Field(
        default=False, description="start at or before the champion's training end (the session is marked in-sample)"
    )
    adapt_thresholds: OnlineConfig | None = Field(
        default=None,
        description="adapt the champion's threshold from closed trades' outcomes with these guardrails "
        "(tradeloop.ops.adaptation; None: the model's own, never adapted), e.g. OnlineConfig(min_samples=20)",
    )

    @field_validator("symbols")
    @classmethod
    def _each_symbol_once(cls, symbols: tuple[str, ...]) -> tuple[str, ...]:
        twice = sorted({s for s in symbols if symbols.count(s) > 1})
        if twice:
            raise ValueError(f"names {', '.join(twice)} more than once; name each symbol once")
        return symbols


@dataclass(frozen=True, kw_only=True, slots=True)
class OptionProblem:
    """A refused option of a new session: its key, the value given and what would be accepted."""

    key: str
    value: Any
    fix: str


def order_rule_problems(
    orders: Mapping[str, Any], *, option: str, names: Mapping[str, str] | None = None
) -> list[OptionProblem]:
    """The order rules that are not order rules (rule 2); ``option`` is how the caller names
    the rules (``--orders``), ``names`` how it names what sets each (``{"init_cash": "--cash"}``)."""
    names = names or {}
    return [
        OptionProblem(
            key=key,
            value=value,
            fix=f"{key} is set by {names.get(SET_ELSEWHERE[key], SET_ELSEWHERE[key])}, not {option}",
        )
        for key, value in orders.items()
        if key in SET_ELSEWHERE
    ]


def risk_problems(risk: Mapping[str, Any], *, example: str) -> list[OptionProblem]:
    """A user's risk options that are refused (rule 3); ``example`` shows how to turn one limit off."""
    if "bypass" not in risk:
        return []
    fix = (
        "bypass turns every limit and the kill switch off and exists for tests only; turn single limits "
        f"off instead, e.g. {example}"
    )
    return [OptionProblem(key="bypass", value=risk["bypass"], fix=fix)]


def check_live_config(backtest: BacktestConfig, *, paper: bool = True) -> None:
    """What the live engine can trade: every order and sizing rule the backtest simulates on the
    paper broker (which replays the kernel: ``live.brokers.paper``); on a venue (``paper=False``)
    the same: market and limit entries (GTC at ``limit_offset`` from the close, canceled after
    ``limit_ttl_bars`` of the symbol's candles: ``live.order_manager`` rule 6; the venue charges
    its own fees, ``maker_fee_rate`` is the backtest's), exits with any sizing, and stops,
    trailing stops and take-profits, placed once an entry fills (native where the market lists
    them, engine-managed on closed bars otherwise: ``live.venue_protection``). One portfolio:
    ``cash_sharing=True``. (``close_at_end`` only closes a backtest's last bar; a live session has
    none.) ``paper`` is kept for the checks that differ by broker (none at present)."""
    if not backtest.cash_sharing:
        raise ConfigError(
            "cash_sharing=False gives each symbol its own cash; a live session keeps one: set cash_sharing=True"
        )


def check_window(strategy, window_bars: int, *, backtest: BacktestConfig | None = None) -> None:
    """The live window must hold the decision's warm-up (``tradeloop.thresholds.warmup``) and
    what ``backtest``'s sizing and stops read: ``vol_window + 1`` bars for ``vol_target`` and ``correlation``,
    ``atr_window + 1`` for an ATR stop (``live.entries``)."""
    needs = [(min_window_bars(strategy), f"the {strategy.name} decision's warm-up")]
    if backtest is not None and backtest.sizing in ("vol_target", "correlation"):
        needs.append((backtest.vol_window + 1, f"{backtest.sizing} sizing's vol_window={backtest.vol_window} returns"))
    if backtest is not None and (backtest.atr_stop is not None or backtest.atr_trailing is not None):
        needs.append((backtest.atr_window + 1, f"the ATR stops' atr_window={backtest.atr_window} warm-up"))
    need, what = max(needs, key=lambda n: n[0])
    if need > window_bars:
        raise ConfigError(
            f"window_bars={window_bars} is below {what} of {need} "
            f"bars per symbol: decisions would differ from research; pass --window-bars {need} or "
            "more (SessionConfig.window_bars)"
        )


def stored_config(spec: SessionSpec, *, fee_rate: float) -> BacktestConfig:
    """The ``BacktestConfig`` a new session is stored with (rule 2)."""
    base = {
        "init_cash": spec.init_cash,
        "fee_rate": fee_rate,
        "slippage": spec.slippage,
        "fraction": spec.fraction,
        "cash_sharing": True,
    }
    try:
        return BacktestConfig(**{**base, **spec.orders})
    except ValidationError as exc:
        raise config_error(exc, what="session orders (--orders)", model=BacktestConfig) from None


def replay_first_bar(lake: CandleLake, spec: SessionSpec) -> int:
    """The first good candle of the session's series within ``start``..``end``: where a replay
    of the lake begins (what ``live.runner.check_replay_data`` finds from its feed)."""
    keys = [SeriesKey(spec.exchange, symbol, spec.timeframe) for symbol in spec.symbols]
    missing = [k.label for k in keys if not lake.exists(k)]
    if missing:
        raise DataError(
            f"no candles in the lake for {', '.join(missing)}; fetch them (`tradeloop data fetch` / `data "
            "import-sample`), or give the session's first bar (start) or the ccxt feed"
        )
    times = [lake.read(k, start=spec.start, end=spec.end)["ts"] for k in keys]
    found = [earliest(ts) for ts in times if len(ts)]
    if not found:
        raise DataError(
            f"{', '.join(k.label for k in keys)} have no candles between start {spec.start} and end {spec.end} "
            "(epoch ms); widen them"
        )
    return min(found)


def create_session(
    store: OpsStore,
    registry: ModelRegistry,
    spec: SessionSpec,
    *,
    first_bar_ms: int | None = None,
    owner_id: int | None = None,
    actor: str | None = None,
    credential_id: int | None = None,
) -> TradingSession:
    """Create the session ``spec`` describes, from the champion's costs (rules 2 to 6).
    ``first_bar_ms``: the replay's first candle when known (``tradeloop.ops.in_sample.first_bar``).
    ``credential_id``: the owner's stored exchange credential a live session trades with
    (``tradeloop.identity.credentials``; None: the engine host's keys).

    Raises
    ------
    ConfigError
        A bad order rule, a config the live engine cannot trade, or an in-sample start.
    ModelError
        The champion cannot be loaded and no ``fee_rate`` was given.
    SessionStateError
        A session with that name exists.
    """
    entry = registry.champion(spec.strategy)
    model = None
    if entry is not None:
        try:
            model = registry.load(spec.strategy)[1]
        except ModelError:
            if spec.fee_rate is None:
                raise  # its costs would set the session's fees
            # with the fees given, a champion that cannot load is the slot's to refuse (reduce-only)
    fee = spec.fee_rate
    if fee is None:
        fee = model.barriers.cost / 2 if model is not None else 0.001
    backtest = stored_config(spec, fee_rate=fee)
    check_live_config(backtest, paper=spec.mode == "paper")
    detail = in_sample_detail(
        spec,
        first_bar_ms=first_bar(spec, first_bar_ms),
        trained_until_ms=model.trained_until if model is not None else None,
        artifact=entry.artifact if entry is not None else None,
    )
    return store.create_session(
        name=spec.name,
        strategy=spec.strategy,
        exchange=spec.exchange,
        timeframe=spec.timeframe,
        symbols=list(spec.symbols),
        mode=spec.mode,
        init_cash=spec.init_cash,
        config=backtest.model_dump(mode="json"),
        in_sample=detail is not None,
        in_sample_detail=detail,
        risk_config=spec.risk.model_dump(mode="json"),
        owner_id=owner_id,
        actor=actor,
        credential_id=credential_id,
        adaptation=None if spec.adapt_thresholds is None else spec.adapt_thresholds.model_dump(mode="json"),
    )
