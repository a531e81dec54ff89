"""The dashboard marks in-sample sessions (overview, performance) and says in words, from the
audit log, what research did to the champion: its age, when it goes stale, the last retrain
that failed or was refused (streamlit's AppTest on real data)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from live.runner import SessionConfig, run_session
from tests.app.conftest import dashboard_reads
from tests.app.test_dashboard import DASHBOARD, page, table
from tests.live.conftest import SYMBOLS, World, trained_world  # noqa: F401  (shared fixture)
from tradeloop.ops import OpsStore
from tradeloop.ops.champion_log import iso_utc
from tradeloop.registry import Lineage, ModelRegistry

REFUSED = "challenger Sharpe 0.0100 per bar is below the champion's 0.0200"


@pytest.fixture(scope="module")
def marked_root(trained_world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A champion trained until 100 bars before the end of the sample, two sessions (one from
    300 bars before the end, in-sample; one after the training end) and research audit rows."""
    root = tmp_path_factory.mktemp("marked") / "data"
    shutil.copytree(trained_world.root, root, ignore=shutil.ignore_patterns("tradeloop.db*"))
    settings = trained_world.settings.model_copy(update={"data_dir": root})
    ts = trained_world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"]
    registry = ModelRegistry(settings.registry_dir)  # a champion trained until 100 bars before the end
    _, model = registry.load("sma_cross")
    model.trained_until, model.max_age_ms = int(ts[-100]), 14 * 86_400_000
    registry.promote("sma_cross", registry.register(model.save(root.parent / "model")), lineage=Lineage(run_id="cut"))
    asyncio.run(
        run_session(settings, SessionConfig(name="inside", start=int(ts[-300]), allow_in_sample=True), max_bars=20)
    )
    asyncio.run(run_session(settings, SessionConfig(name="outside", start=model.trained_until + 1)))
    store = OpsStore.open(settings.effective_database_url)
    with store.transaction() as db:
        OpsStore.audit(
            db, "retrain_failed", detail={"strategy": "sma_cross", "reason": "superseded failure", "run_id": "run-1"}
        )
        OpsStore.audit(
            db,
            "retrain_refused",
            detail={
                "strategy": "sma_cross",
                "reason": REFUSED,
                "stale_at_ms": model.trained_until + model.max_age_ms,
                "run_id": "run-2",
            },
        )
        OpsStore.audit(
            db, "retrain_failed", detail={"strategy": "momentum", "reason": "another strategy's", "run_id": "run-3"}
        )
    store.close()
    return root


@pytest.fixture
def marked_env(marked_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with dashboard_reads(marked_root, monkeypatch):
        yield marked_root


def test_overview_marks_the_in_sample_session_only(marked_env: Path) -> None:
    at = page("overview")
    table = at.dataframe[0].value
    assert dict(zip(table["session"], table["sample"], strict=True)) == {
        "inside": "IN-SAMPLE",
        "outside": "out-of-sample",
    }
    assert at.selectbox[0].value == "inside"
    [warning] = at.warning
    assert "Session 'inside' is IN-SAMPLE" in warning.value and "trained on" in warning.value
    at.selectbox[0].set_value("outside").run()
    assert not at.exception and not at.warning


def test_performance_warns_about_the_in_sample_run(marked_env: Path) -> None:
    at = page("performance")
    assert at.selectbox(key="perf-session").value == "inside"
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and warnings[0].startswith("'inside' is IN-SAMPLE")
    metrics = table(at, "metric").set_index("metric")
    assert metrics.loc["sample", "live: inside"] == "IN-SAMPLE"
    at.selectbox(key="perf-session").set_value("outside").run()
    assert not at.exception and not at.warning
    assert table(at, "metric").set_index("metric").loc["sample", "live: outside"] == "out-of-sample"


def test_champion_page_says_its_age_and_the_last_refused_retrain(marked_env: Path) -> None:
    _, model = ModelRegistry(marked_env / "registry").load("sma_cross")
    stale_at = iso_utc(model.trained_until + model.max_age_ms)
    at = page("champion")
    [age] = at.error  # the sample ends in 2025: stale long ago by the wall clock
    assert f"The champion saw data up to {iso_utc(model.trained_until)}" in age.value
    assert f"it went stale on {stale_at}" in age.value
    [research] = [w.value for w in at.warning]
    assert research.startswith("The last retrain (")
    assert f"run run-2) was refused by the gate: {REFUSED}. The champion goes stale on {stale_at}." in research
    assert "superseded failure" not in research and "another strategy" not in research
    assert any("Promoted without the gate (run cut" in c.value for c in at.caption)  # promoted by hand


def test_a_database_with_an_older_schema_is_named_with_the_fix(tmp_path: Path, monkeypatch) -> None:
    from tests.ops.test_in_sample import HEAD
    from tradeloop.ops import connect, migrate

    engine = connect(f"sqlite:///{tmp_path / 'tradeloop.db'}")
    migrate(engine, "0002")  # written by an older tradeloop: no sessions.in_sample yet
    engine.dispose()
    with dashboard_reads(tmp_path, monkeypatch):
        at = AppTest.from_file(DASHBOARD, default_timeout=60)
        at.run()
        [error] = at.exception
        assert f"has schema revision 0002; this dashboard reads {HEAD}" in error.value
        assert "run `tradeloop live sessions` once" in error.value
        OpsStore.open(f"sqlite:///{tmp_path / 'tradeloop.db'}").close()  # what `live sessions` does
        at.run()
        assert not at.exception and at.info  # no session yet
