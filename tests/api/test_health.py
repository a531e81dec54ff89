"""Liveness and readiness apart: /health answers whenever the process does; /ready only when the
database answers at the latest migration (and Redis, when set)."""

from __future__ import annotations

from pathlib import Path

import httpx
from alembic.script import ScriptDirectory

from api.app import create_app
from api.context import ApiContext
from tests.api.conftest import Api, free_port, serve
from tests.conftest import REDIS_URL
from tradeloop.ops import OpsStore, connect, migrate
from tradeloop.ops.database import MIGRATIONS, latest_revision
from tradeloop.settings import Settings


def test_ready_names_each_check_over_postgresql(api: Api) -> None:
    assert api.client.get("/health").json() == {"status": "ok", "checks": {}}
    assert api.client.get("/ready").json() == {"status": "ok", "checks": {"database": "ok", "migrations": "ok"}}


def test_a_schema_behind_the_code_is_alive_but_not_ready(tmp_path: Path) -> None:
    head = latest_revision()
    previous = ScriptDirectory(str(MIGRATIONS)).get_revision(head).down_revision
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = OpsStore(connect(url))
    migrate(store.engine, previous)  # a process of the previous release made it; nobody migrated since
    settings = Settings(TRADELOOP_DATA_DIR=str(tmp_path / "data"), DATABASE_URL=url)
    server, thread = serve(
        create_app(settings, context=ApiContext.from_settings(settings, store=store)), port := free_port()
    )
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/health").status_code == 200  # alive: restarting it would not help
        ready = httpx.get(f"{base}/ready")
        assert ready.status_code == 503
        assert ready.json() == {
            "status": "unavailable",
            "checks": {"database": "ok", "migrations": f"behind: at {previous}, latest {head}"},
        }
        migrate(store.engine)
        assert httpx.get(f"{base}/ready").status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()


def test_an_unreachable_redis_makes_it_unready(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    store = OpsStore.open(url)
    good = Settings(TRADELOOP_DATA_DIR=str(tmp_path / "data"), DATABASE_URL=url, REDIS_URL=REDIS_URL)
    ctx = ApiContext.from_settings(good, store=store)
    server, thread = serve(create_app(good, context=ctx), port := free_port())
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/ready").json()["checks"] == {"database": "ok", "migrations": "ok", "redis": "ok"}
        ctx.settings = Settings(TRADELOOP_DATA_DIR=str(tmp_path / "data"), DATABASE_URL=url,
                                REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")  # fmt: skip  # Redis gone
        ready = httpx.get(f"{base}/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["redis"] == "failed: ConnectionError"
        assert httpx.get(f"{base}/health").status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()
