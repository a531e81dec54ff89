"""The API served for real: uvicorn on a free loopback port, in a thread, over a throwaway
PostgreSQL database (the ``pg_url`` server) or SQLite; tests call it through HTTP (httpx)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn

from api.app import create_app
from api.context import ApiContext
from tests.conftest import throwaway_database
from tradeloop.identity import Role
from tradeloop.ops import OpsStore
from tradeloop.settings import Settings

PASSWORD = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Api:
    """A running API and a client for it."""

    url: str
    ctx: ApiContext
    client: httpx.Client
    tokens: dict[str, dict] = field(default_factory=dict)

    def user(self, username: str, role: Role = Role.VIEWER, password: str = PASSWORD) -> int:
        return self.ctx.identity.create_user(username=username, password=password, role=role).id

    def login(self, username: str, password: str = PASSWORD) -> dict[str, str]:
        """Sign in; the Authorization header (the tokens are kept in ``tokens``)."""
        answer = self.client.post("/auth/login", json={"username": username, "password": password})
        assert answer.status_code == 200, answer.text
        self.tokens[username] = answer.json()
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def serve(app, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    return server, thread


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A database of this test's own on the real PostgreSQL server."""
    with throwaway_database("tradeloop_api") as url:
        yield url


def start_api(tmp_path: Path, database_url: str, **settings) -> Iterator[Api]:
    config = Settings(TRADELOOP_DATA_DIR=str(tmp_path / "data"), DATABASE_URL=database_url, **settings)
    store = OpsStore.open(database_url)
    ctx = ApiContext.from_settings(config, store=store)
    port = free_port()
    server, thread = serve(create_app(config, context=ctx), port)
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=10) as client:
        yield Api(url=url, ctx=ctx, client=client)
    server.should_exit = True
    thread.join(timeout=10)
    store.close()


@pytest.fixture
def api(tmp_path: Path, pg_database: str) -> Iterator[Api]:
    """The API over PostgreSQL."""
    yield from start_api(tmp_path, pg_database)


@pytest.fixture
def sqlite_api(tmp_path: Path) -> Iterator[Api]:
    """The API over the embedded default (SQLite)."""
    yield from start_api(tmp_path, f"sqlite:///{tmp_path / 'ops.db'}")
