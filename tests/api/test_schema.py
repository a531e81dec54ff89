"""Property-based tests of the whole API generated from its own OpenAPI schema (schemathesis).

The API runs for real (uvicorn over a throwaway PostgreSQL database) with a seeded world: a
lake of candles, a champion in the registry, an admin, a trader and a viewer, a session with
orders, fills, positions and equity, an API key and a finished backtest job. For every
operation in the schema ``/openapi.json`` serves, schemathesis generates requests that follow
the schema (positive) and requests that break it (negative), sent signed in as an admin, then
as a viewer. Every answer must be no server error (5xx), a status the operation documents, a
documented content type, and a body valid against the documented schema.

The size of a run (operations x examples and the requests sent) is printed (``pytest -s``).
``TRADELOOP_SCHEMA_EXAMPLES`` changes the examples per operation (default 25);
``TRADELOOP_SCHEMA_SEED`` the seed (the run is deterministic for a seed).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, Phase, assume, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import select

from api.app import create_app
from api.context import ApiContext
from tests.api.conftest import PASSWORD, Api, free_port, serve
from tests.registry.test_registry import saved_model
from tradeloop.data import CandleLake
from tradeloop.data.importer import import_sample, sample_files
from tradeloop.identity import Role
from tradeloop.jobs import JobKind, JobQueue, JobsConfig, default_runners
from tradeloop.ops import EquityPoint, Fill, OpsStore, Order, Position
from tradeloop.ops.challenger_models import ChallengerRow
from tradeloop.registry import Lineage, ModelRegistry
from tradeloop.settings import Settings

EXAMPLES = int(os.environ.get("TRADELOOP_SCHEMA_EXAMPLES", "25"))
SEED = int(os.environ.get("TRADELOOP_SCHEMA_SEED", "0"))
# it adapts its threshold, so that freezing and unfreezing it can succeed (freeze comes first in the schema)
NEW_SESSION = {
    "name": "btc",
    "symbols": ["BTC-USD", "ETH-USD"],
    "start": "2030-01-01T00:00:00Z",
    "adapt_thresholds": True,
}
CREDENTIAL = {"name": "main", "exchange": "coinbase", "api_key": "schema-key", "secret": "schema-secret"}
BACKTEST = {"strategy": "sma_cross", "exchange": "coinbase", "symbols": ["BTC-USD"], "timeframe": "4h"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@dataclass
class World:
    api: Api
    ids: dict[str, int]  # the seeded objects' ids: users by name, session, doomed (session), job, key
    artifact: str  # a registered model that is not the champion
    answers: Counter[tuple[str, int]] = field(default_factory=Counter)  # (operation, status) -> requests


def _stand_in_research(params: dict[str, Any]) -> dict[str, Any]:
    """A research run here would start the real pipeline (Dagster, notebooks) for minutes."""
    return {"run_id": "stand-in", "champion": None}


def _seed(api: Api, settings: Settings, tmp_path: Path) -> tuple[dict[str, int], str]:
    """The seeded objects' ids, and a registered artifact that is not the champion."""
    lake = CandleLake(settings.lake_dir, quarantine_root=settings.quarantine_dir)
    import_sample(lake, files=[p for p in sample_files() if p.name.startswith("coinbase__") and "__4h" in p.name])
    registry = ModelRegistry(settings.registry_dir)
    champion = registry.register(saved_model(tmp_path / "model", 1))
    registry.promote("sma_cross", champion, lineage=Lineage(git_commit="deadbeef", data_snapshot="ab" * 32))
    challenger = registry.register(saved_model(tmp_path / "challenger", 2))
    ids = {
        name: api.user(name, role) for name, role in (("root", Role.ADMIN), ("ana", Role.TRADER), ("vera", Role.VIEWER))
    }
    ana = api.login("ana")
    made = api.client.post("/sessions", json=NEW_SESSION, headers=ana)
    assert made.status_code == 201, made.text
    session_id = made.json()["id"]
    doomed = api.client.post("/sessions", json=NEW_SESSION | {"name": "doomed"}, headers=ana)
    assert doomed.status_code == 201, doomed.text
    with api.ctx.store.transaction() as db:
        for i in range(4):
            order = Order(
                session_id=session_id, client_order_id=f"o{i}", venue="paper", symbol="BTC-USD", side="buy",
                intent="enter_long", quote_amount=100.0, decided_ts=1_893_456_000_000 + i * 14_400_000,
                status="filled",
            )  # fmt: skip
            db.add(order)
            db.flush()
            db.add(
                Fill(
                    order_id=order.id, session_id=session_id, venue="paper", symbol="BTC-USD", trade_id=f"t{i}",
                    side="buy", quantity=0.01, price=100.0, fee=0.1, ts=order.decided_ts + 14_400_000,
                )
            )  # fmt: skip
            db.add(EquityPoint(session_id=session_id, ts=order.decided_ts, equity=10_000.0 + i, cash=9_000.0))
        db.add(
            Position(
                session_id=session_id, venue="coinbase", symbol="BTC-USD", quantity=0.04, entry_price=100.0,
                entry_fee=0.4, entry_ts=1_893_456_000_000, last_price=110.0, realized_pnl=0.0,
            )
        )  # fmt: skip
    key = api.client.post("/keys", json={"name": "reader", "scopes": ["read"]}, headers=ana)
    assert key.status_code == 201, key.text
    job = api.client.post("/backtests", json=BACKTEST, headers=ana)
    assert job.status_code == 202, job.text
    credential = api.client.post("/credentials", json=CREDENTIAL, headers=ana)
    assert credential.status_code == 201, credential.text
    added = api.client.post(f"/sessions/{session_id}/challengers", json={"artifact": challenger}, headers=ana)
    assert added.status_code == 201, added.text
    with api.ctx.store.transaction() as db:  # as the engine's shadow stage recommends it (tests/live/test_shadow.py)
        row = db.scalar(select(ChallengerRow).where(ChallengerRow.session_id == session_id))
        row.status = "recommended"
        row.decision = {"evidence": "live", "champion": champion, "bars": 300, "log_lr": 4.0, "gate": []}
    seeded = {"session": session_id, "doomed": doomed.json()["id"], "job": job.json()["id"], "key": key.json()["id"]}
    seeded["credential"] = credential.json()["id"]
    return ids | seeded, challenger


@pytest.fixture
def world(tmp_path: Path, pg_database: str) -> Iterator[World]:
    settings = Settings(
        _env_file=None,
        TRADELOOP_DATA_DIR=str(tmp_path / "data"),
        DATABASE_URL=pg_database,
        # thousands of requests in a minute: the limits (tests/api/test_ratelimit.py) stay out of the way
        TRADELOOP_RATE_LIMIT_USER="",
        TRADELOOP_RATE_LIMIT_API_KEY="",
        TRADELOOP_RATE_LIMIT_IP="",
        TRADELOOP_RATE_LIMIT_LOGIN="",
        TRADELOOP_ENCRYPTION_KEY=Fernet.generate_key().decode(),
    )
    store = OpsStore.open(pg_database)
    ctx = ApiContext.from_settings(settings, store=store)
    app = create_app(settings, context=ctx)
    runners = default_runners(settings, JobsConfig()) | {JobKind.RESEARCH: _stand_in_research}
    app.state.jobs = queue = JobQueue.from_settings(settings, store=store, runners=runners)
    port = free_port()
    server, thread = serve(app, port)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        api = Api(url=str(client.base_url), ctx=ctx, client=client)
        ids, challenger = _seed(api, settings, tmp_path)
        yield World(api=api, ids=ids, artifact=challenger)
    server.should_exit = True
    thread.join(timeout=20)
    queue.broker.close()
    store.close()


def _valid_bodies(world: World, username: str) -> dict[str, Any]:
    """A body each of these operations accepts (generated ones rarely are: a session must start
    after the champion's training end, a backtest name stored series, a promotion an artifact)."""
    return {
        "POST /auth/login": {"username": username, "password": PASSWORD},
        "POST /auth/refresh": {"refresh_token": world.api.tokens[username]["refresh_token"]},
        "POST /sessions": {"name": "eth", "symbols": ["ETH-USD"], "start": "2030-01-01T00:00:00Z"},
        "POST /credentials": CREDENTIAL | {"name": f"{username}-main"},
        "POST /backtests": BACKTEST,
        "POST /models/{strategy}/promote": {"artifact": world.artifact, "reason": "schema run"},
        "POST /sessions/{session_id}/thresholds/override": {"threshold": 0.6, "reason": "schema run"},
        "POST /sessions/{session_id}/thresholds/revert": {"reason": "schema run"},
        "POST /sessions/{session_id}/thresholds/freeze": {"reason": "schema run"},
        "POST /sessions/{session_id}/thresholds/unfreeze": {"reason": "schema run"},
        "POST /sessions/{session_id}/challengers": {"artifact": world.artifact},
        "POST /sessions/{session_id}/challengers/{artifact}/promote": {"reason": "schema run"},
    }


# a stored series: generated exchange ids are rarely ccxt's, so a success is not left to luck
SAMPLE_SERIES = {"exchange": "coinbase", "symbol": "BTC-USD", "timeframe": "4h"}
VALID_QUERIES = {"GET /data/coverage": SAMPLE_SERIES, "GET /data/candles": SAMPLE_SERIES}


def _known(operation, world: World, username: str) -> dict[str, Any]:
    """The path parameters that name seeded objects."""
    other = world.ids["vera"] if username != "vera" else world.ids["ana"]
    seeded = {"session_id": world.ids["session"], "job_id": world.ids["job"], "key_id": world.ids["key"],
              "user_id": other, "strategy": "sma_cross", "credential_id": world.ids["credential"],
              "artifact": world.artifact}  # fmt: skip
    if f"{operation.method.upper()} {operation.path}" == "POST /sessions/{session_id}/stop":
        seeded["session_id"] = world.ids["doomed"]  # the other operations keep a session that runs
    return {p.name: seeded[p.name] for p in operation.path_parameters}


def _sure_case(operation, world: World, username: str):
    """The one request built by hand for an operation that generated ones rarely get right (a
    valid body or query about the seeded objects), sent before the generated ones so that a
    success does not hang on which branches the generator happens to draw; None for the rest."""
    label = f"{operation.method.upper()} {operation.path}"
    body, query = _valid_bodies(world, username).get(label), VALID_QUERIES.get(label)
    if body is None and query is None:
        return None
    extra = {} if body is None else {"body": body, "media_type": "application/json"}
    return operation.Case(path_parameters=_known(operation, world, username), query=query, **extra)


def _strategy(operation, world: World, username: str) -> st.SearchStrategy:
    """Valid requests, valid requests about the seeded objects (random ids mostly name nothing:
    404), and invalid requests."""
    label = f"{operation.method.upper()} {operation.path}"
    modes = [operation.as_strategy(GenerationMode.POSITIVE)]
    known = _known(operation, world, username)
    if known:
        modes.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known))
    if (query := VALID_QUERIES.get(label)) is not None:
        modes.append(operation.as_strategy(GenerationMode.POSITIVE, query=query))
    if (body := _valid_bodies(world, username).get(label)) is not None:
        modes.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=known or None, body=body))
    if operation.path_parameters or operation.query or operation.body:  # something to get wrong
        modes.append(operation.as_strategy(GenerationMode.NEGATIVE))
    return st.one_of(modes)


def run_operation(
    world: World, operation, *, username: str, headers: dict[str, str], session: requests.Session
) -> None:
    """Every example of one operation; raises on the first failing check (shrunk)."""
    label = f"{operation.method.upper()} {operation.path}"
    me = world.ids[username]

    def send(case) -> None:
        for name in ("Authorization", "X-API-Key"):  # the run's own credential, not generated ones
            case.headers.pop(name, None)
        response = case.call(base_url=world.api.url, session=session, headers=headers)
        world.answers[label, response.status_code] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    if (sure := _sure_case(operation, world, username)) is not None:
        send(sure)

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES, deadline=None, database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(case=_strategy(operation, world, username))
    def check(case) -> None:
        if label == "PATCH /users/{user_id}":
            assume(case.path_parameters.get("user_id") != me)  # not lock ourselves out mid-run
        if label == "POST /sessions/{session_id}/stop":
            assume(case.path_parameters.get("session_id") != world.ids["session"])  # for good: keep one running
        send(case)

    check()


def fuzz(world: World, username: str) -> list[str]:
    """Run every operation's examples signed in as ``username``; the failures, one line each."""
    headers = world.api.login(username)
    schema = schemathesis.openapi.from_url(f"{world.api.url}/openapi.json")
    failures: list[str] = []
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            try:
                run_operation(world, operation, username=username, headers=headers, session=session)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - one run reports every failing operation
                failures.append(f"{operation.method.upper()} {operation.path}: {type(exc).__name__}: {str(exc)[:1500]}")
    return failures


# what a viewer may do besides reading: sign in and out, and manage their own API keys
VIEWER_WRITES = {"POST /auth/login", "POST /auth/refresh", "POST /auth/logout", "POST /keys",
                 "POST /keys/{key_id}/rotate", "DELETE /keys/{key_id}"}  # fmt: skip
# no example reaches a success: acknowledging needs a session in reduce-only (tests/api/test_sessions.py)
NEVER_OK = {"POST /sessions/{session_id}/ack"}


@pytest.mark.parametrize("username", ["root", "vera"])
def test_every_operation_answers_as_its_schema_says(world: World, username: str) -> None:
    failures = fuzz(world, username)
    operations = {label for label, _ in world.answers}
    statuses: Counter[int] = Counter()
    for (_, status), n in world.answers.items():
        statuses[status] += n
    print(
        f"\nschemathesis as {username}: {len(operations)} operations x up to {EXAMPLES} examples: "
        f"{statuses.total()} requests; statuses {dict(sorted(statuses.items()))}"
    )
    assert not failures, "\n\n".join(failures)
    assert len(operations) >= 40 and 500 not in statuses
    succeeded = {label for label, status in world.answers if 200 <= status < 300}
    if username == "root":  # an admin may do everything: each operation succeeded at least once
        assert operations - succeeded == NEVER_OK
    else:  # a viewer reads (not the users) and manages their keys; everything else is refused
        assert all(label in VIEWER_WRITES or label.startswith("GET ") for label in succeeded), succeeded
        assert "GET /users" not in succeeded and world.answers["POST /sessions/{session_id}/stop", 403] > 0
