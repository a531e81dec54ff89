"""Security headers on every answer, the documentation pages' own policy, HSTS only behind
TLS, and CORS closed unless origins are listed: through the real HTTP stack."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from api.security import cors_origins
from tests.api.conftest import Api, free_port, start_api
from tradeloop.errors import ConfigError

DESK = "https://desk.example.com"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[..., Api]]:
    with ExitStack() as stack:

        def start(**settings: str) -> Api:
            folder = tmp_path / f"api{free_port()}"
            folder.mkdir()
            url = f"sqlite:///{folder / 'ops.db'}"
            return stack.enter_context(contextmanager(start_api)(folder, url, **settings))

        yield start


def _policy(answer) -> dict[str, str]:
    """The Content-Security-Policy as directive -> sources."""
    parts = (p.strip().split(" ", 1) for p in answer.headers["Content-Security-Policy"].split(";"))
    return {p[0]: p[1] if len(p) > 1 else "" for p in parts}


def test_every_answer_carries_the_security_headers_and_a_policy_that_runs_nothing(served) -> None:
    api = served(TRADELOOP_RATE_LIMIT_LOGIN="1/minute")
    wrong = {"username": "nobody", "password": "nothing at all here"}
    answers = [
        api.client.get("/health"),  # 200
        api.client.get("/auth/me"),  # 401 problem
        api.client.get("/no/such/path"),  # 404 from the router
        api.client.post("/auth/login", json=wrong),  # 401
        api.client.post("/auth/login", json=wrong),  # 429 from the rate limiter
        api.client.get("/openapi.json"),
    ]
    assert [a.status_code for a in answers] == [200, 401, 404, 401, 429, 200]
    for answer in answers:
        h = answer.headers
        assert h["X-Content-Type-Options"] == "nosniff" and h["X-Frame-Options"] == "DENY"
        assert h["Referrer-Policy"] == "no-referrer" and h["Cache-Control"] == "no-store"
        policy = _policy(answer)
        assert policy["default-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
        assert "script-src" not in policy and "unsafe" not in h["Content-Security-Policy"]
        assert "Strict-Transport-Security" not in h  # plain http: no HSTS


def test_hsts_is_sent_when_the_api_is_served_behind_tls(served) -> None:
    api = served(TRADELOOP_API_BEHIND_TLS="true")
    hsts = api.client.get("/health").headers["Strict-Transport-Security"]
    assert "max-age=31536000" in hsts


def test_the_documentation_pages_may_run_only_their_own_inline_script_and_assets(served) -> None:
    api = served()
    docs = api.client.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    inline = re.findall(rb"<script>(.*?)</script>", docs.content, re.DOTALL)
    assert len(inline) == 1 and b"SwaggerUIBundle" in inline[0]
    digest = base64.b64encode(hashlib.sha256(inline[0]).digest()).decode()
    scripts = _policy(docs)["script-src"].split()
    assert f"'sha256-{digest}'" in scripts and "'self'" in scripts and not [s for s in scripts if "http" in s]
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts and "*" not in scripts
    assert _policy(docs)["frame-ancestors"] == "'none'" and docs.headers["X-Frame-Options"] == "DENY"
    redoc = api.client.get("/redoc")
    assert redoc.status_code == 200 and _policy(redoc)["script-src"].strip() == "'self'"
    assert "sha256-" not in _policy(redoc)["script-src"]  # ReDoc's page has no inline script
    redirect = api.client.get("/docs/oauth2-redirect")
    assert redirect.status_code == 200 and "sha256-" in _policy(redirect)["script-src"]


def test_cors_is_closed_by_default(served) -> None:
    api = served()
    preflight = api.client.options(
        "/auth/me", headers={"Origin": DESK, "Access-Control-Request-Method": "GET",
                             "Access-Control-Request-Headers": "authorization"},
    )  # fmt: skip
    assert not any(h.lower().startswith("access-control-") for h in preflight.headers)
    simple = api.client.get("/health", headers={"Origin": DESK})
    assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers


def test_cors_answers_only_the_listed_origins_without_credentials(served) -> None:
    api = served(TRADELOOP_CORS_ORIGINS=f"{DESK}, http://127.0.0.1:8501")
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
    allowed = api.client.options("/auth/login", headers={"Origin": DESK, **ask})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == DESK
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in allowed.headers
    other = api.client.options("/auth/login", headers={"Origin": "https://evil.example", **ask})
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    read = api.client.get("/health", headers={"Origin": DESK})
    assert read.headers["access-control-allow-origin"] == DESK
    assert "ratelimit-remaining" in read.headers["access-control-expose-headers"].lower()
    assert (
        "access-control-allow-origin"
        not in api.client.get("/health", headers={"Origin": "https://evil.example"}).headers
    )


@pytest.mark.parametrize("bad", ["*", "desk.example.com", "https://desk.example.com/app", "https://*.example.com"])
def test_a_cors_origin_that_is_not_an_exact_origin_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="TRADELOOP_CORS_ORIGINS"):
        cors_origins(f"{DESK},{bad}")
