"""Backups restore: a paper session trades half its replay, `tradeloop backup run` snapshots the
database (SQLite, then the real PostgreSQL), the lake and the registry with the real restic,
`tradeloop backup restore` loads them into an empty database and an empty folder, every table's
rows and every file's bytes are the same, and the restored session trades the rest of its replay
to the backtest's orders, none lost or sent twice."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from live.runner import SessionConfig, run_session
from tests.conftest import throwaway_database
from tests.live.conftest import SYMBOLS, World, assert_matches_backtest, make_settings
from tradeloop.backup import BackupConfig, restore_backup
from tradeloop.errors import BackupError, ConfigError
from tradeloop.registry import Lineage, ModelRegistry

ROOT = Path(__file__).resolve().parents[2]
BARS = 700  # the session's replay: the last 700 bars (11 entries, as test_server_loss)
PASSWORD = "b4ckup-pa55-7d2e91c4"


def tradeloop(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRADELOOP_", "RESTIC_")) and k not in ("DATABASE_URL", "REDIS_URL")
    }
    return subprocess.run(
        [sys.executable, "-m", "tradeloop", *args],
        env=inherited | {"COLUMNS": "400"} | env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def fresh_world(trained_world: World, root: Path, database_url: str | None) -> World:
    """The trained world's lake and champion in a data folder of its own, over ``database_url``."""
    shutil.copytree(trained_world.settings.lake_dir, root / "lake")
    registry = ModelRegistry(root / "registry")
    registry.store.put(trained_world.settings.registry_dir / "artifacts" / trained_world.champion)
    registry.promote("sma_cross", trained_world.champion, lineage=Lineage(run_id="test"))
    extra = {"DATABASE_URL": database_url} if database_url else {}
    return replace(trained_world, root=root, settings=make_settings(root, **extra))


def table_rows(url: str) -> dict[str, list[tuple]]:
    """Every table's rows in primary-key order, read directly."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = {}
            for name in sa.inspect(conn).get_table_names():
                table = sa.Table(name, sa.MetaData(), autoload_with=conn)
                order = list(table.primary_key.columns) or list(table.columns)
                rows[name] = [tuple(r) for r in conn.execute(sa.select(table).order_by(*order))]
            return rows
    finally:
        engine.dispose()


def tree_hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str | None, str]]:
    """The session's database (None: SQLite in its data folder) and the empty one restored into."""
    if request.param == "sqlite":
        yield None, f"sqlite:///{(tmp_path / 'restored' / 'tradeloop.db').as_posix()}"
        return
    with ExitStack() as stack:
        yield stack.enter_context(throwaway_database()), stack.enter_context(throwaway_database())


def test_a_restored_backup_is_identical_and_its_session_trades_on(
    trained_world: World, tmp_path: Path, databases: tuple[str | None, str]
) -> None:
    source_url, target_url = databases
    world = fresh_world(trained_world, tmp_path / "source", source_url)
    start = int(world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-BARS])
    config = SessionConfig(name="backed-up", start=start)
    engine = asyncio.run(run_session(world.settings, config, max_bars=BARS // 2))
    orders_before = len(engine.store.orders(engine.session.id))
    engine.store.close()
    assert orders_before >= 5, "the first half should have traded"

    backups = {"TRADELOOP_BACKUP_REPOSITORY": str(tmp_path / "repo"), "TRADELOOP_BACKUP_PASSWORD": PASSWORD}
    source_env = {"TRADELOOP_DATA_DIR": str(world.root), **backups} | (
        {"DATABASE_URL": source_url} if source_url else {}
    )
    made = tradeloop("backup", "run", env=source_env)
    assert made.returncode == 0, made.stderr
    assert "initialised the restic repository" in made.stdout and "lake, registry" in made.stdout

    restored_root = tmp_path / "restored"
    restored = tradeloop(
        "backup", "restore", "--data-dir", str(restored_root), "--database-url", target_url,
        env={"TRADELOOP_DATA_DIR": str(tmp_path / "elsewhere"), **backups},
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert "every table's count and hash as backed up" in restored.stdout

    source_db = world.settings.effective_database_url
    before, after = table_rows(source_db), table_rows(target_url)
    assert {t: len(r) for t, r in after.items()} == {t: len(r) for t, r in before.items()}
    assert after == before  # every row, every column
    assert len(after["orders"]) == orders_before and len(after["fills"]) > 0
    for folder in ("lake", "registry"):
        hashes = tree_hashes(world.root / folder)
        assert len(hashes) > 2 and tree_hashes(restored_root / folder) == hashes

    # the restored copy alone (the source is gone) resumes the session from its last committed bar
    shutil.rmtree(world.root)
    restored_world = replace(world, root=restored_root, settings=make_settings(restored_root, DATABASE_URL=target_url))
    resumed = asyncio.run(run_session(restored_world.settings, config))
    resumed.store.close()
    assert resumed.bars == BARS - BARS // 2  # the bars after the backup, none twice
    assert_matches_backtest(restored_world, "backed-up", start=start, database_url=target_url)


def test_restore_refuses_a_full_database_or_folder_and_the_password_never_shows(
    trained_world: World, tmp_path: Path
) -> None:
    world = fresh_world(trained_world, tmp_path / "source", None)
    start = int(world.candles.filter(pl.col("symbol") == SYMBOLS[0])["ts"][-BARS])
    asyncio.run(run_session(world.settings, SessionConfig(name="small", start=start), max_bars=5)).store.close()
    backups = {"TRADELOOP_BACKUP_REPOSITORY": str(tmp_path / "repo"), "TRADELOOP_BACKUP_PASSWORD": PASSWORD}
    env = {"TRADELOOP_DATA_DIR": str(world.root), "TRADELOOP_LOG_LEVEL": "DEBUG", **backups}
    made = tradeloop("backup", "run", env=env)
    assert made.returncode == 0, made.stderr
    assert "restic backup --json --tag tradeloop" in made.stderr  # the commands are logged at DEBUG ...
    listed = tradeloop("backup", "list", env=env)
    assert listed.returncode == 0 and "sqlite" in listed.stdout
    for done in (made, listed):
        assert PASSWORD not in done.stdout + done.stderr  # ... and the password never is

    config = BackupConfig(repository=str(tmp_path / "repo"), password=SecretStr(PASSWORD))
    source_db = world.settings.effective_database_url
    with pytest.raises(ConfigError, match="already holds .* restored only into an empty database"):
        restore_backup(config=config, snapshot="latest", data_dir=tmp_path / "a", database_url=source_db)
    (tmp_path / "b" / "lake" / "x").mkdir(parents=True)
    with pytest.raises(ConfigError, match=f"{tmp_path / 'b' / 'lake'} is not empty"):
        restore_backup(config=config, snapshot="latest", data_dir=tmp_path / "b", database_url=empty_db(tmp_path))
    with pytest.raises(ConfigError, match="'f00' is not one of tradeloop's snapshots"):
        restore_backup(config=config, snapshot="f00", data_dir=tmp_path / "c", database_url=empty_db(tmp_path))

    wrong = BackupConfig(repository=str(tmp_path / "repo"), password=SecretStr("not-the-" + PASSWORD))
    with pytest.raises(BackupError, match="wrong password") as refused:
        restore_backup(config=wrong, snapshot="latest", data_dir=tmp_path / "d", database_url=empty_db(tmp_path))
    assert "not-the-" not in str(refused.value)
    assert not Path(empty_db(tmp_path).removeprefix("sqlite:///")).exists()  # nothing was written
    assert not (tmp_path / "d" / "lake").exists()

    with pytest.raises(ConfigError, match="TRADELOOP_BACKUP_PASSWORD is not set"):
        BackupConfig.from_settings(make_settings(world.root))
    with pytest.raises(ConfigError, match="keeps nothing .* TRADELOOP_BACKUP_KEEP_LAST=1"):
        BackupConfig.from_settings(
            make_settings(world.root, TRADELOOP_BACKUP_PASSWORD=PASSWORD, TRADELOOP_BACKUP_KEEP_LAST="0",
                          TRADELOOP_BACKUP_KEEP_DAILY="0", TRADELOOP_BACKUP_KEEP_WEEKLY="0",
                          TRADELOOP_BACKUP_KEEP_MONTHLY="0")
        )  # fmt: skip


def empty_db(tmp_path: Path) -> str:
    return f"sqlite:///{(tmp_path / 'empty.db').as_posix()}"
