"""How the loop retrains and what it promotes: the retrain policy, the gate's bars, the data
cut-off, and the audit events that make a failed or refused retrain visible.

(No ``from __future__ import annotations`` here: Dagster reads the annotations.)
"""

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from tradeloop.errors import ConfigError
from tradeloop.ops import OpsStore
from tradeloop.research.gate import GateConfig
from tradeloop.research.policy import RetrainPolicy
from tradeloop.settings import get_settings

RETRAIN_FAILED, RETRAIN_REFUSED, CHAMPION_STALE_SOON = "retrain_failed", "retrain_refused", "champion_stale_soon"


class RetrainResource(dg.ConfigurableResource):
    """The retrain policy (one source for the walk-forward, the schedule and the live
    staleness rule), the promotion gate's bars and the research data cut-off."""

    training_window_days: float | None = None  # None: every event so far
    retrain_every_days: int = 30
    max_model_age_days: float = 45.0
    on_stale: str = "reduce_only"
    min_deflated_sharpe: float = 0.95
    max_pbo: float = 0.5
    max_drawdown: float = -0.35
    min_recent_trades: int = 5
    champion_tolerance: float = 0.002
    data_until: str = ""  # ISO date: research sees only candles before it (empty: all)

    def policy(self) -> RetrainPolicy:
        return RetrainPolicy(
            training_window_days=self.training_window_days,
            retrain_every_days=self.retrain_every_days,
            max_model_age_days=self.max_model_age_days,
            on_stale=self.on_stale,
        )

    def gate(self) -> GateConfig:
        return GateConfig(
            min_deflated_sharpe=self.min_deflated_sharpe,
            max_pbo=self.max_pbo,
            max_drawdown=self.max_drawdown,
            min_recent_trades=self.min_recent_trades,
            champion_tolerance=self.champion_tolerance,
        )

    def until_ms(self) -> int | None:
        if not self.data_until:
            return None
        try:
            when = datetime.fromisoformat(self.data_until)
        except ValueError:
            raise ConfigError(f"data_until={self.data_until!r} is not an ISO date; give e.g. 2025-08-01") from None
        return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp() * 1000)


def ops_url(root: Path) -> str:
    """The operational database of the data folder ``root``: DATABASE_URL when set, else the
    SQLite file the live engine uses there."""
    return get_settings().database_url or f"sqlite:///{(Path(root) / 'tradeloop.db').as_posix()}"


def record(event: str, *, root: Path, **detail: object) -> None:
    """An audit row in the operational database (``tradeloop live``'s store, ``ops_url``); a
    research run that cannot reach it logs instead of failing the run."""
    try:
        store = OpsStore.open(ops_url(root))
        try:
            with store.transaction() as db:
                OpsStore.audit(db, event, detail=dict(detail), actor="research-pipeline")
        finally:
            store.close()
    except Exception as exc:  # noqa: BLE001 - the audit row is a report, the run's result stands
        dg.get_dagster_logger().warning(f"audit event {event} not recorded: {exc}")
