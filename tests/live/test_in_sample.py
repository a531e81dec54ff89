"""The demo is out of sample: `live run` refuses a new session whose first bar lies at or before
the champion's training end unless --allow-in-sample, which marks it in-sample (kept on
resume, audited, shown by `live sessions` and the closing line). No champion: nothing to
check. The ccxt feed's first bar is now."""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from live.runner import SessionConfig, open_session, run_session
from tests.live.conftest import SYMBOLS, World, make_settings
from tests.live.test_status import session_column, tradeloop
from tradeloop.errors import ConfigError
from tradeloop.ops import OpsStore
from tradeloop.ops.champion_log import iso_utc
from tradeloop.registry import Lineage, ModelRegistry

STEP = 4 * 3_600_000  # 4h bars


def _ts(world: World) -> list[int]:
    return world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"].to_list()


def _world(trained_world: World, root: Path, *, trained_until: int | None) -> World:
    """The sample lake with a registry and a database of its own; the champion is the trained
    world's model saved again with ``trained_until`` (None: no champion at all)."""
    shutil.copytree(trained_world.settings.lake_dir, root / "lake")
    if trained_until is not None:
        registry = ModelRegistry(root / "registry")
        _, model = ModelRegistry(trained_world.settings.registry_dir).load("sma_cross")
        model.trained_until = trained_until
        artifact = registry.register(model.save(root / "model"))
        registry.promote("sma_cross", artifact, lineage=Lineage(run_id="cut"))
    return replace(trained_world, root=root, settings=make_settings(root))


@pytest.fixture
def cut_world(trained_world: World, tmp_path: Path) -> World:
    """A champion trained until 60 bars before the end of the sample."""
    return _world(trained_world, tmp_path / "world", trained_until=_ts(trained_world)[-60])


def _store(world: World) -> OpsStore:
    return OpsStore.open(world.settings.effective_database_url)


def _run(world: World, config: SessionConfig, bars: int = 2):
    return asyncio.run(run_session(world.settings, config, max_bars=bars))


def test_a_replay_from_inside_the_training_window_is_refused_naming_the_times_and_the_fixes(cut_world) -> None:
    ts = _ts(cut_world)
    cut = ts[-60]
    for start in (ts[-80], cut):  # before the training end, and at it
        with pytest.raises(ConfigError) as refused:
            _run(cut_world, SessionConfig(name="early", start=start))
        message = str(refused.value)
        assert f"would start at {iso_utc(start)}" in message
        assert f"sma_cross champion's training end {iso_utc(cut)}" in message
        assert f"--start {iso_utc(cut + STEP)} (the first bar after the training end)" in message
        assert "--allow-in-sample" in message
    first = int(cut_world.candles["ts"].min())  # no --start: the first candle of the session's series
    with pytest.raises(ConfigError, match=f"would start at {iso_utc(first)}"):
        _run(cut_world, SessionConfig(name="early"))
    assert _store(cut_world).sessions() == []  # nothing written


def test_allow_in_sample_marks_and_audits_the_session_and_a_resume_keeps_the_flag(cut_world) -> None:
    ts = _ts(cut_world)
    engine = _run(cut_world, SessionConfig(name="inside", start=ts[-80], allow_in_sample=True))
    assert engine.session.in_sample is True
    store = _store(cut_world)
    session = store.session("inside")
    assert session.in_sample is True
    [row] = store.audit_log(session.id, events=("session_in_sample",))
    assert row.detail["first_bar_ms"] == ts[-80] and row.detail["trained_until_ms"] == ts[-60]
    resumed = _run(cut_world, SessionConfig(name="inside", start=ts[-80]))  # no flag needed to resume
    assert resumed.session.in_sample is True and store.session("inside").in_sample is True
    assert resumed.session.last_bar_ts > engine.session.last_bar_ts


def test_a_session_after_the_training_end_is_out_of_sample_even_when_in_sample_is_allowed(cut_world) -> None:
    ts = _ts(cut_world)
    first = _run(cut_world, SessionConfig(name="after", start=ts[-59]))
    allowed = _run(cut_world, SessionConfig(name="allowed", start=ts[-59], allow_in_sample=True))
    assert first.session.in_sample is False and allowed.session.in_sample is False
    store = _store(cut_world)
    assert store.audit_log(events=("session_in_sample",)) == []


def test_without_a_champion_there_is_nothing_to_check(trained_world: World, tmp_path: Path) -> None:
    world = _world(trained_world, tmp_path / "bare", trained_until=None)
    engine = _run(world, SessionConfig(name="bare"), bars=1)  # from the lake's first candle
    assert engine.session.in_sample is False


def test_the_ccxt_feed_starts_now(trained_world: World, tmp_path: Path) -> None:
    now = int(time.time() * 1000) // STEP * STEP
    config = SessionConfig(name="venue", exchange="coinbase", symbols=SYMBOLS, feed="ccxt")
    ahead = _world(trained_world, tmp_path / "ahead", trained_until=now + 2 * 86_400_000)
    registry, store = ModelRegistry(ahead.settings.registry_dir), _store(ahead)
    with pytest.raises(ConfigError, match="--allow-in-sample") as refused:
        open_session(store, registry, config)
    assert f"training end {iso_utc(now + 2 * 86_400_000)}" in str(refused.value)
    assert open_session(store, registry, config.model_copy(update={"allow_in_sample": True})).in_sample is True
    behind = _world(trained_world, tmp_path / "behind", trained_until=now - 86_400_000)
    session = open_session(_store(behind), ModelRegistry(behind.settings.registry_dir), config)
    assert session.in_sample is False


def _sample_column(out: str) -> dict[str, str]:
    """Session name -> the ``sample`` column of ``tradeloop live sessions``."""
    return session_column(out, 4)


def test_the_command_refuses_then_marks_the_session_in_its_closing_line_and_list(cut_world) -> None:
    ts = _ts(cut_world)
    refused = tradeloop(cut_world, "live", "run", "--name", "cli", "--start", iso_utc(ts[-80]), "--max-bars", "1")
    assert refused.returncode == 2, refused.stderr
    assert "--allow-in-sample" in refused.stderr and f"--start {iso_utc(ts[-59])}" in refused.stderr
    allowed = tradeloop(
        cut_world, "live", "run", "--name", "cli", "--start", iso_utc(ts[-80]), "--max-bars", "1", "--allow-in-sample"
    )
    assert allowed.returncode == 0, allowed.stderr
    assert "session 'cli' (IN-SAMPLE): 1 bar(s) processed" in allowed.stdout
    _run(cut_world, SessionConfig(name="fresh", start=ts[-59]), bars=1)
    listed = tradeloop(cut_world, "live", "sessions")
    assert listed.returncode == 0, listed.stderr
    assert _sample_column(listed.stdout) == {"cli": "IN-SAMPLE", "fresh": "out-of-sample"}
    assert "session 'cli' is IN-SAMPLE" in listed.stdout
