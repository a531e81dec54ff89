"""What a job is: its kind, its status, and the parameters each kind takes.

Statuses (``JobStatus``) and the moves between them:

- ``queued``: waiting for a worker; also between the attempts of a job whose last attempt hit
  a transient error (``attempts`` > 0 and ``error`` says what happened).
- ``running``: a worker has it (``attempts`` counts the starts). A worker that died holding it
  leaves it ``running`` until the queue hands its message to another worker, which starts it again.
- ``succeeded`` (``result`` set), ``failed`` (bad parameters, missing data, a time limit or any
  error that a retry would repeat: never retried), ``dead`` (transient errors outlasted every
  retry; its message is in the queue's dead-letter queue). These three are final.

Parameters are validated twice: when a job is submitted (so a bad one is refused before it is
queued) and when a worker starts it (the stored JSON is read back through the same model).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from tradeloop.backtest import BacktestConfig
from tradeloop.data import SeriesKey
from tradeloop.errors import TradeloopError
from tradeloop.risk import RiskConfig
from tradeloop.strategies import STRATEGIES, get_strategy


class JobKind(StrEnum):
    BACKTEST = "backtest"
    RESEARCH = "research"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    DEAD = "dead"

    @property
    def final(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.DEAD)


class JobTimeLimitError(TradeloopError):
    """A job ran past its kind's time limit and was stopped (it is failed, not retried: it
    would run as long again)."""


MAX_CASH = 1e12  # a backtest's starting cash at most (the API's sessions keep the same bound)
ParamValue = StrictBool | StrictInt | StrictFloat | StrictStr


class BacktestParams(BaseModel):
    """One strategy backtested on stored candles, as ``tradeloop backtest`` runs it: signals
    on the whole stored history (indicators start warm), then the bars in
    ``[start, end)`` simulated with ``config`` (and ``risk``'s limits, when given)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: str = Field(description=f"one of: {', '.join(sorted(STRATEGIES))}", examples=["sma_cross"])
    params: dict[str, ParamValue] = Field(
        default_factory=dict,
        description="the strategy's parameters, checked by its own schema",
        examples=[{"fast": 10, "slow": 30}],
    )
    exchange: str = Field(description="the exchange the candles were stored from (ccxt id)", examples=["coinbase"])
    symbols: list[str] = Field(min_length=1, max_length=50, examples=[["BTC-USD", "ETH-USD"]])
    timeframe: str = Field(description="the candles' timeframe", examples=["4h"])
    start: datetime | None = Field(
        default=None, description="first bar's open time, included (ISO, UTC when no zone)", examples=["2024-01-01"]
    )
    end: datetime | None = Field(
        default=None,
        description="bars opening before this time (ISO, UTC when no zone; a date is its midnight)",
        examples=["2024-07-01"],
    )
    config: BacktestConfig = Field(
        default_factory=BacktestConfig, description="fills, fees, sizing and stops (BacktestConfig)"
    )
    risk: RiskConfig | None = Field(
        default=None, description="the risk engine's limits, applied bar by bar as the live engine does"
    )

    @field_validator("start", "end")
    @classmethod
    def _in_utc(cls, moment: datetime | None) -> datetime | None:
        return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment

    @field_validator("config")
    @classmethod
    def _bounded_cash(cls, config: BacktestConfig) -> BacktestConfig:
        if config.init_cash > MAX_CASH:
            raise ValueError(
                f"init_cash={config.init_cash:g} is past the most a backtest starts with ({MAX_CASH:g}); "
                "give a smaller amount"
            )
        return config

    @model_validator(mode="after")
    def _check(self) -> BacktestParams:
        get_strategy(self.strategy, **self.params)  # a ConfigError naming the parameter and the fix
        keys = self.keys()
        if len({k.symbol for k in keys}) != len(keys):
            raise ValueError(f"symbols={self.symbols} names a symbol twice; give each once")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError(f"start={self.start.isoformat()} is not before end={self.end.isoformat()}; swap them")
        if self.risk is not None and self.risk.bypass:
            raise ValueError("risk.bypass=true turns every limit off and exists for tests; leave risk out instead")
        return self

    def keys(self) -> list[SeriesKey]:
        return [SeriesKey(self.exchange, symbol, self.timeframe) for symbol in self.symbols]

    def range_ms(self) -> tuple[int, int] | None:
        """``[lo, hi)`` in epoch ms, or None for the whole stored history."""
        if self.start is None and self.end is None:
            return None
        lo = int(self.start.timestamp() * 1000) if self.start is not None else -(2**62)
        hi = int(self.end.timestamp() * 1000) if self.end is not None else 2**62
        return lo, hi


class ResearchParams(BaseModel):
    """A research run: the research graph materialized as ``python -m pipelines.run`` does it
    (candles, features, thresholds, backtest, then the promotion gate, which may promote a new
    champion). Unset options take the pipeline's defaults (``ResearchResource``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: str | None = Field(
        default=None, description=f"one of: {', '.join(sorted(STRATEGIES))}", examples=["breakout"]
    )
    until: date | None = Field(
        default=None,
        description="data cut-off: research sees only candles before this day (the months after stay out of sample)",
        examples=["2025-05-01"],
    )
    trials: int | None = Field(default=None, ge=1, le=1000, description="optuna trials", examples=[10])
    workers: int | None = Field(
        default=None, ge=1, le=16, description="optuna worker processes; 1 with a seed is reproducible", examples=[1]
    )
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, description="the sampler's seed", examples=[7])

    @model_validator(mode="after")
    def _check(self) -> ResearchParams:
        if self.strategy is not None and self.strategy not in STRATEGIES:
            get_strategy(self.strategy)  # the did-you-mean message
        return self

    def argv(self) -> list[str]:
        """The options of ``python -m pipelines.run``."""
        options: dict[str, Any] = {
            "--strategy": self.strategy,
            "--until": self.until.isoformat() if self.until is not None else None,
            "--trials": self.trials,
            "--workers": self.workers,
            "--seed": self.seed,
        }
        return [part for flag, value in options.items() if value is not None for part in (flag, str(value))]


PARAMS: dict[JobKind, type[BaseModel]] = {JobKind.BACKTEST: BacktestParams, JobKind.RESEARCH: ResearchParams}
