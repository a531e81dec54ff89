"""Backtest configuration: frozen and validated at construction.

Every bound is a pydantic constraint whose field description says what the number means
and gives an example, so ``tradeloop.errors.config_error`` can turn a bad value into a
message naming the option, the value and the fix.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator


class KernelScalars(NamedTuple):
    """A config's numbers as the compiled kernels (``kernel.simulate``, ``sweep_kernel.sweep_pass``)
    take them: NaN for a stop that is off, no limit TTL for market entries, the maker fee
    defaulting to the taker's."""

    init_cash: float
    fee_rate: float
    slippage: float
    stop_loss: float
    take_profit: float
    trailing_stop: float
    close_at_end: bool
    atr_stop: float
    atr_trailing: float
    limit_ttl_bars: int
    limit_offset: float
    maker_fee_rate: float


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


class BacktestConfig(BaseModel):
    """How orders fill and how positions are sized and protected.

    Fill rules (see ``tradeloop.backtest.kernel`` for the full list): a signal decided at a
    bar's close fills at the next bar's open (or, with ``entry_order='limit'``, an entry
    rests as a limit order for ``limit_ttl_bars`` candles); fees are a fraction of notional
    per side; slippage moves every market fill against the trader by a fraction of price.
    Stops in percent and in ATRs may be combined: the tightest level is the stop.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)  # no silent inf / NaN

    init_cash: float = Field(default=10_000.0, gt=0)
    fee_rate: float = Field(
        default=0.001, ge=0, lt=0.1, description="fee per side, a fraction of notional: 0.001 = 0.1%"
    )
    slippage: float = Field(
        default=0.0, ge=0, lt=0.1, description="adverse move per fill, a fraction of price: 0.0005 = 5 bp"
    )
    sizing: Literal["fixed_fraction", "vol_target", "correlation"] = "fixed_fraction"
    fraction: float = Field(
        default=1.0,
        gt=0,
        le=1.0,
        description="share of equity per new position, 0 < fraction <= 1: 0.5 = half (vol_target: the cap)",
    )
    vol_target: float | None = Field(
        default=None, gt=0, description="vol_target: annualised volatility aimed at per position"
    )
    vol_window: int = Field(
        default=30,
        ge=2,
        description="bars of returns per volatility estimate (vol_target) or covariance estimate (correlation)",
    )
    cluster_cap: float = Field(
        default=0.5,
        gt=0,
        le=1.0,
        description="correlation: largest summed weight of a cluster of correlated symbols, e.g. 0.5",
    )
    corr_threshold: float = Field(
        default=0.7,
        gt=-1,
        lt=1,
        description="correlation: symbols whose shrunk correlation is at least this share a cluster, e.g. 0.7",
    )
    stop_loss: float | None = Field(
        default=None, gt=0, lt=1, description="loss from entry as a fraction, 0 < x < 1: 0.05 = 5%"
    )
    take_profit: float | None = Field(default=None, gt=0, description="gain from entry as a fraction: 0.1 = 10%")
    trailing_stop: float | None = Field(
        default=None, gt=0, lt=1, description="drop from the peak as a fraction, 0 < x < 1: 0.1 = 10%"
    )
    atr_stop: float | None = Field(
        default=None,
        gt=0,
        description="stop distance from entry in ATRs, the ATR at the decision bar, fixed: 2.0 = entry - 2 ATR (long)",
    )
    atr_trailing: float | None = Field(
        default=None,
        gt=0,
        description="trailing distance from the peak in ATRs, the ATR at the previous bar's close: 3.0",
    )
    atr_window: int = Field(
        default=14, ge=1, description="bars in Wilder's average true range for atr_stop/atr_trailing: 14"
    )
    entry_order: Literal["market", "limit"] = Field(
        default="market",
        description="how entries are placed: 'market' (next open) or 'limit' (limit_offset from the close)",
    )
    limit_offset: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="limit entries: distance from the decision bar's close, a fraction: 0.002 = buy 0.2% below",
    )
    limit_ttl_bars: int = Field(
        default=1, ge=1, description="limit entries: the symbol's candles an order rests before it expires: 3"
    )
    maker_fee_rate: float | None = Field(
        default=None,
        ge=0,
        lt=0.1,
        description="limit entries: fee per fill, a fraction of notional (None: fee_rate): 0.0002 = 0.02%",
    )
    cash_sharing: bool = Field(
        default=True,
        description="True: one portfolio, shared cash across symbols; False: one per symbol",
    )
    close_at_end: bool = Field(
        default=False,
        description="close open positions at the last close (with fees) instead of marking them",
    )

    @model_validator(mode="after")
    def _sizing_complete(self) -> BacktestConfig:
        if self.sizing == "vol_target" and self.vol_target is None:
            raise ValueError("sizing='vol_target' needs vol_target, e.g. vol_target=0.5 (50%/year)")
        if self.sizing == "correlation" and self.vol_target is None:
            raise ValueError(
                "sizing='correlation' needs vol_target, the portfolio's annualised volatility aimed at, e.g. 0.2"
            )
        if self.sizing == "correlation" and self.vol_window < 20:
            raise ValueError(
                f"sizing='correlation' estimates a covariance from vol_window={self.vol_window} bars; "
                "set vol_window=20 or more"
            )
        if self.sizing == "fixed_fraction" and self.vol_target is not None:
            raise ValueError("vol_target is set but sizing='fixed_fraction'; set sizing='vol_target'")
        return self

    @model_validator(mode="after")
    def _limit_options_need_limit_entries(self) -> BacktestConfig:
        if self.entry_order == "market":
            limit_only = ("limit_offset", "limit_ttl_bars", "maker_fee_rate")
            set_ = [name for name in limit_only if getattr(self, name) != type(self).model_fields[name].default]
            if set_:
                raise ValueError(
                    f"{', '.join(set_)}: for limit entries only; set entry_order='limit' or leave the default"
                )
        return self

    def kernel_scalars(self) -> KernelScalars:
        """This config's numbers as the compiled kernels take them."""
        return KernelScalars(
            init_cash=float(self.init_cash),
            fee_rate=float(self.fee_rate),
            slippage=float(self.slippage),
            stop_loss=_or_nan(self.stop_loss),
            take_profit=_or_nan(self.take_profit),
            trailing_stop=_or_nan(self.trailing_stop),
            close_at_end=bool(self.close_at_end),
            atr_stop=_or_nan(self.atr_stop),
            atr_trailing=_or_nan(self.atr_trailing),
            limit_ttl_bars=int(self.limit_ttl_bars) if self.entry_order == "limit" else 0,
            limit_offset=float(self.limit_offset),
            maker_fee_rate=float(self.fee_rate if self.maker_fee_rate is None else self.maker_fee_rate),
        )
