"""How numbers and times read in tables and reports: one definition for the CLI, notebooks and HTML.

Missing values (NaN, None) print as ``-``; infinities as ``inf``; times are UTC. A value that
rounds to zero prints as zero (never ``-0.00``); percentages over 1,000% have thousands separators.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

DAY_MS = 86_400_000


def _missing(value: float | int | None) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return None


def _number(value: float, spec: str) -> str:
    text = f"{value:{spec}}"
    if text.startswith("-") and not any(c in "123456789" for c in text):
        return f"{0.0:{spec}}"  # -0.0, or a tiny loss rounded away: no "-0.00"
    return text


def pct(value: float | None, digits: int = 2) -> str:
    """``0.1234 -> '12.34%'``."""
    return _missing(value) or _number(value, f",.{digits}%")  # type: ignore[arg-type]


def signed_pct(value: float | None, digits: int = 2) -> str:
    """``0.1234 -> '+12.34%'``."""
    return _missing(value) or _number(value, f"+,.{digits}%")  # type: ignore[arg-type]


def ratio(value: float | None, digits: int = 2) -> str:
    """``1.2345 -> '1.23'``."""
    return _missing(value) or _number(value, f",.{digits}f")  # type: ignore[arg-type]


def money(value: float | None) -> str:
    """``12345.678 -> '12,345.68'``."""
    return _missing(value) or _number(value, ",.2f")  # type: ignore[arg-type]


def count(value: int | None) -> str:
    return _missing(value) or f"{value:,}"


def days(value: float | None) -> str:
    """``2.5 -> '2.5 days'``; under a day in hours."""
    text = _missing(value)
    if text:
        return text
    assert value is not None
    if value == 0:
        return "0 days"
    if value < 1:
        return f"{value * 24:.1f} hours"
    return f"{value:,.1f} days"


def when(ms: int | None, *, date_only: bool = False) -> str:
    """Epoch ms as ``2024-01-31 12:00`` (UTC), or ``2024-01-31``; a time no calendar can show
    prints as its epoch ms."""
    if ms is None:
        return "-"
    try:
        moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms"
    return moment.strftime("%Y-%m-%d" if date_only else "%Y-%m-%d %H:%M")


def days_under(period_days: float) -> str:
    """A period that is under a bar, to three significant digits rounded down (29.96 days reads
    ``'29.9 days'``, never ``'30 days'`` beside a bar of 30)."""
    if not period_days > 0 or math.isinf(period_days):
        return f"{period_days:g} days"
    step = 10.0 ** (math.floor(math.log10(period_days)) - 2)
    return f"{math.floor(period_days / step * (1 + 1e-12)) * step:.3g} days"


def short_sample(period_days: float, min_days: float) -> str:
    """The caveat printed instead of an annualised figure: ``'n/a: 2 days < 30'``."""
    return f"n/a: {days_under(period_days)} < {min_days:g}"
