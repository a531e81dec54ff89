"""The risk limits and order rules a session is started with (``tradeloop live run --risk
KEY=VALUE``, ``--orders KEY=VALUE``) and what a session's risk engine holds now
(``tradeloop live risk NAME``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tradeloop.errors import ConfigError
from tradeloop.ops.session_spec import order_rule_problems, risk_problems
from tradeloop.risk import RiskConfig


def _value(option: str, key: str, text: str) -> Any:
    """A JSON scalar (``5000``, ``0.2``, ``true``, ``null``); anything else stays text."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    if isinstance(value, (dict, list)):
        raise ConfigError(f"{option} {key}={text}: give a number, true/false or null, e.g. {option} {key}=0.2")
    return value


def parse_pairs(pairs: list[str] | None, *, option: str, example: str) -> dict[str, Any]:
    """``KEY=VALUE`` strings as a dict (keys with ``-`` read as ``_``); a malformed one is a
    ``ConfigError`` naming it and the form."""
    data: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"{option} {pair!r}: write KEY=VALUE, e.g. {option} {example}")
        data[key] = _value(option, key, text.strip())
    return data


def risk_config(pairs: list[str] | None, *, file: Path | None = None) -> RiskConfig:
    """``RiskConfig`` from ``--risk-file`` (JSON object) overlaid with ``--risk KEY=VALUE`` pairs;
    a bad key or value is a ``ConfigError`` naming it and the fix."""
    data: dict[str, Any] = {}
    if file is not None:
        try:
            loaded = json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--risk-file {file}: not a readable JSON object ({exc})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f'--risk-file {file}: expected a JSON object such as {{"max_drawdown": 0.2}}')
        data.update(loaded)
    data.update(parse_pairs(pairs, option="--risk", example="max_order_notional=5000"))
    for problem in risk_problems(data, example="--risk max_drawdown=null"):  # bypass (tradeloop.ops.session_spec)
        raise ConfigError(f"--risk {problem.key}={problem.value}: {problem.fix}")
    return RiskConfig.parse(data)


#: the options that set what ``--orders`` may not (``tradeloop.ops.session_spec.SET_ELSEWHERE``)
OWN_OPTIONS = {"init_cash": "--cash", "fraction": "--fraction"}


def order_rules(pairs: list[str] | None) -> dict[str, Any]:
    """``--orders KEY=VALUE`` pairs; a key another option owns is refused naming that option."""
    data = parse_pairs(pairs, option="--orders", example="stop_loss=0.05")
    for problem in order_rule_problems(data, option="--orders", names=OWN_OPTIONS):
        raise ConfigError(f"--orders {problem.key}=...: {problem.fix}")
    return data


def risk_rows(config: RiskConfig, state: dict | None) -> list[tuple[str, str]]:
    """(what, value) rows for ``tradeloop live risk``: every limit, then the state."""
    rows = [
        (name, "off" if value is None else f"{value:g}" if isinstance(value, float) else str(value))
        for name, value in config.model_dump().items()
    ]
    if state:
        hwm, last = state.get("high_water"), state.get("last_equity")
        rows.append(("high-water mark", f"{hwm:,.2f}" if hwm is not None else "-"))
        rows.append(("equity (last bar)", f"{last:,.2f}" if last is not None else "-"))
        if hwm and last is not None:
            rows.append(("drawdown", f"{1 - last / hwm:.2%}"))
        tripped = state.get("tripped")
        rows.append(("kill switch", f"TRIPPED: {tripped.get('message', tripped)}" if tripped else "armed"))
    return rows
