"""``tradeloop models show`` prints what the champion was trained on: its training window
(first and last training event, UTC dates), the data hash, the universe and where it came from."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from test_cli import tradeloop

from tradeloop.registry import Lineage, ModelRegistry
from tradeloop.strategies import SmaCross
from tradeloop.thresholds import AdaptiveThreshold, BarrierConfig, ThresholdModel, Universe
from tradeloop.thresholds.dataset import META_FEATURES

TRAINED_FROM, TRAINED_UNTIL = 1_672_531_200_000, 1_704_067_200_000  # 2023-01-01, 2024-01-01 (UTC)


def _model(path: Path, *, info: dict, universe: Universe | None) -> Path:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, len(META_FEATURES)))
    y = (X[:, 0] + rng.normal(size=200) > 0).astype(int)
    est = AdaptiveThreshold().fit(X, y, returns=np.where(y == 1, 0.02, -0.01))
    return ThresholdModel(
        strategy=SmaCross(fast=10, slow=40),
        barriers=BarrierConfig(),
        estimator=est,
        trained_until=TRAINED_UNTIL,
        info=info,
        universe=universe,
    ).save(path)


def test_show_prints_the_training_window_data_hash_and_universe(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    info = {
        "trained_from": TRAINED_FROM,
        "data_hash": "9f2c" * 16,
        "retrain_policy": {
            "training_window_days": 365,
            "retrain_every_days": 7,
            "max_model_age_days": 14,
            "on_stale": "reduce_only",
        },
    }
    universe = Universe(exchange="binance", timeframe="1h", symbols=("ETH-USDT", "BTC-USDT"))
    artifact = registry.register(_model(tmp_path / "m", info=info, universe=universe))
    registry.promote("sma_cross", artifact, lineage=Lineage(data_snapshot="ab" * 32))
    shown = tradeloop("models", "show", "sma_cross", data_dir=tmp_path)
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert card_field(out, "training window").startswith("2023-01-01 00:00 .. 2024-01-01 00:00 UTC")
    assert card_field(out, "data hash") == "9f2c" * 16  # the model's own hash wins over the lineage's snapshot
    assert card_field(out, "universe") == "exchange binance, timeframe 1h, 2 symbol(s): BTC-USDT, ETH-USDT"
    assert card_field(out, "retrain policy") == (
        "refit every 7 day(s) on the last 365 days; stale after 14 days, then reduce-only"
    )
    machine = json.loads(tradeloop("models", "show", "sma_cross", "--json", data_dir=tmp_path).stdout)
    assert machine["artifact"] == artifact and machine["model"]["trained_until"] == TRAINED_UNTIL
    assert machine["training"]["data hash"] == "9f2c" * 16 and machine["lineage"]["data_snapshot"] == "ab" * 32


def test_show_falls_back_to_the_lineage_snapshot_and_says_unknown(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    artifact = registry.register(_model(tmp_path / "m", info={}, universe=None))
    registry.promote("sma_cross", artifact, lineage=Lineage(data_snapshot="cd" * 32))
    shown = tradeloop("models", "show", "sma_cross", data_dir=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert card_field(shown.stdout, "training window").startswith("unknown .. 2024-01-01 00:00 UTC")
    assert card_field(shown.stdout, "data hash") == "cd" * 32
    assert card_field(shown.stdout, "universe") == "not recorded"
    registry.promote("sma_cross", artifact, lineage=Lineage())  # no snapshot recorded either
    assert card_field(tradeloop("models", "show", "sma_cross", data_dir=tmp_path).stdout, "data hash") == "unknown"


def test_the_card_shows_the_gate_as_promoted_with_values_and_bars_as_people_read_them(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    artifact = registry.register(_model(tmp_path / "m", info={}, universe=None))
    gate = [
        {
            "name": "max_drawdown",
            "value": -0.2472,
            "bar": -0.35,
            "passed": True,
            "detail": "worst fall",
            "shown": "-24.7%",
            "shown_bar": ">= -35.0%",
        },
        {"name": "pbo", "value": 0.61, "bar": 0.5, "passed": False, "detail": "CSCV", "shown": "", "shown_bar": ""},
    ]
    registry.promote("sma_cross", artifact, lineage=Lineage(gate=gate, metrics={"oos_max_drawdown": -0.2472}))
    out = tradeloop("models", "show", "sma_cross", data_dir=tmp_path).stdout
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.count("│") > 4]
    rows = {row[0]: row for row in cells if row}
    assert rows["max_drawdown"][1:4] == ["-24.7%", ">= -35.0%", "PASS"]
    assert rows["pbo"][1:4] == ["0.6100", "0.5000", "FAIL"]  # no text given: four decimals
    assert "{" not in out  # a card, not raw JSON


def card_field(out: str, label: str) -> str:
    """The value printed beside ``label`` in the card's panel (one line per field)."""
    for line in out.splitlines():
        inner = line.strip().strip("│").strip()
        if inner.startswith(label + "  "):
            return inner[len(label) :].strip()
    raise AssertionError(f"no {label!r} in the card:\n{out}")


def test_a_champion_promoted_by_hand_says_no_evidence_was_recorded(tmp_path: Path) -> None:
    # `tradeloop models promote` records no gate nor metrics: the card printed an empty "Metrics at promotion" table
    registry = ModelRegistry(tmp_path / "registry")
    artifact = registry.register(_model(tmp_path / "m", info={}, universe=None))
    registry.promote("sma_cross", artifact, lineage=Lineage(parameters={"note": "hotfix"}))
    shown = tradeloop("models", "show", "sma_cross", data_dir=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "Metrics at promotion" not in shown.stdout and "┏" not in shown.stdout
    assert "no promotion gate or metrics recorded" in shown.stdout
    assert card_field(shown.stdout, "parameters") == "note=hotfix"


def test_a_replay_refit_says_where_it_came_from_and_why_it_has_no_gate(tmp_path: Path) -> None:
    # the card read "Dagster run  replay:demo" and blamed a promotion by hand for the missing gate
    registry = ModelRegistry(tmp_path / "registry")
    info = {"retrain_policy": {"training_window_days": None, "retrain_every_days": 30, "cadence": "old key"}}
    artifact = registry.register(_model(tmp_path / "m", info=info, universe=None))
    registry.promote("sma_cross", artifact, lineage=Lineage(run_id="replay:demo"))
    out = tradeloop("models", "show", "sma_cross", data_dir=tmp_path).stdout
    assert card_field(out, "run") == "replay:demo (a scheduled refit by the replay of session 'demo')"
    assert "Dagster run" not in out and "promoted by hand" not in out
    assert "no promotion gate: a replay's scheduled refit is promoted without one" in " ".join(out.split())
    assert card_field(out, "retrain policy") == "cadence=old key, retrain_every_days=30, training_window_days=None"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", card_field(out, "promoted"))  # not an ISO stamp
