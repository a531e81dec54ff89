"""Rate limits per user, per API key and per client IP through the real HTTP stack: the
IETF RateLimit headers count down, an empty bucket is a 429 problem with Retry-After,
Redis shares the buckets between API processes, a Redis that cannot answer lets requests
through, and X-Forwarded-For counts only from a trusted proxy."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import redis

from api.ratelimit import FORWARDED, client_ids, parse_networks
from tests.api.conftest import PASSWORD, Api, free_port, start_api
from tests.conftest import REDIS_URL
from tradeloop.errors import ConfigError
from tradeloop.identity import Role

WRONG = {"username": "ana", "password": "not the password at all"}


@pytest.fixture
def limited(tmp_path: Path, pg_database: str) -> Iterator[Callable[..., Api]]:
    """Start an API over this test's database with the settings given (several may share it)."""
    with ExitStack() as stack:

        def start(**settings: str) -> Api:
            folder = tmp_path / f"api{free_port()}"
            return stack.enter_context(contextmanager(start_api)(folder, pg_database, **settings))

        yield start


def _limits(answer) -> tuple[int, int, int]:
    h = answer.headers
    return int(h["RateLimit-Limit"]), int(h["RateLimit-Remaining"]), int(h["RateLimit-Reset"])


def _refused(answer, limit: int) -> None:
    assert answer.status_code == 429, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["status"] == 429 and "try again in" in answer.json()["detail"]
    assert 1 <= int(answer.headers["Retry-After"]) <= 60
    assert int(answer.headers["RateLimit-Limit"]) == limit and answer.headers["RateLimit-Remaining"] == "0"


def test_sign_ins_from_one_address_stop_after_the_login_limit_even_with_the_right_password(limited) -> None:
    api = limited(TRADELOOP_RATE_LIMIT_LOGIN="3/minute")
    api.user("ana")
    remaining = []
    for _ in range(3):
        answer = api.client.post("/auth/login", json=WRONG)
        assert answer.status_code == 401
        limit, left, reset = _limits(answer)
        assert limit == 3 and 0 < reset <= 60
        remaining.append(left)
    assert remaining == [2, 1, 0]
    _refused(api.client.post("/auth/login", json={"username": "ana", "password": PASSWORD}), 3)
    assert api.client.get("/health").status_code == 200  # only sign-ins are that tight


def test_a_user_and_each_of_their_api_keys_have_buckets_of_their_own(limited) -> None:
    api = limited(TRADELOOP_RATE_LIMIT_USER="4/minute", TRADELOOP_RATE_LIMIT_API_KEY="2/minute")
    api.user("ana", Role.TRADER)
    api.user("bob")
    ana, bob = api.login("ana"), api.login("bob")
    made = api.client.post("/keys", json={"name": "svc", "scopes": ["read"]}, headers=ana)  # ana's 1st request
    key = {"X-API-Key": made.json()["key"]}
    assert [_limits(api.client.get("/auth/me", headers=ana))[1] for _ in range(3)] == [2, 1, 0]
    _refused(api.client.get("/auth/me", headers=ana), 4)
    assert api.client.get("/auth/me", headers=bob).status_code == 200  # another user: untouched
    assert [_limits(api.client.get("/auth/me", headers=key))[:2] for _ in range(2)] == [(2, 1), (2, 0)]
    _refused(api.client.get("/auth/me", headers=key), 2)


def test_anonymous_requests_and_refused_credentials_are_counted_per_address(limited) -> None:
    api = limited(TRADELOOP_RATE_LIMIT_IP="4/minute")
    api.user("ana")
    ana = api.login("ana")  # anonymous: 1 of 4
    assert _limits(api.client.get("/health"))[:2] == (4, 2)
    assert _limits(api.client.get("/auth/me", headers=ana))[:2] == (600, 599)  # signed in: the user's bucket
    for _ in range(2):  # a guessed token: refused, and spent from the address
        assert api.client.get("/auth/me", headers={"Authorization": "Bearer guessed"}).status_code == 401
    _refused(api.client.get("/auth/me", headers={"X-API-Key": "tl_000000000000_guessedguessedguessed"}), 4)
    _refused(api.client.get("/auth/me", headers=ana), 4)  # the address is out, even with a good token
    _refused(api.client.get("/health"), 4)


def test_redis_shares_the_buckets_between_api_processes(limited, redis_prefix: str) -> None:
    settings = {
        "REDIS_URL": REDIS_URL, "TRADELOOP_REDIS_PREFIX": redis_prefix, "TRADELOOP_RATE_LIMIT_USER": "4/minute",
        "TRADELOOP_JWT_SECRET": "one secret for both processes, long enough to sign",
    }  # fmt: skip
    first, second = limited(**settings), limited(**settings)
    first.user("ana")
    ana = first.login("ana")
    seen = [_limits(api.client.get("/auth/me", headers=ana))[1] for api in (first, second, first, second)]
    assert seen == [3, 2, 1, 0]
    _refused(second.client.get("/auth/me", headers=ana), 4)
    keys = redis.Redis.from_url(REDIS_URL).keys(f"{redis_prefix}:ratelimit:*")
    assert any(b"user" in k for k in keys) and any(b"ip" in k for k in keys)


def test_a_redis_that_cannot_answer_lets_requests_through(limited) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    api = limited(REDIS_URL=dead, TRADELOOP_RATE_LIMIT_IP="1/minute")
    for _ in range(3):
        answer = api.client.get("/health")
        assert answer.status_code == 200 and "RateLimit-Limit" not in answer.headers


def test_a_redis_that_hangs_costs_one_timeout_and_is_then_left_alone_for_a_while(limited) -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        api = limited(REDIS_URL=f"redis://127.0.0.1:{silent.getsockname()[1]}/0", TRADELOOP_RATE_LIMIT_IP="1/minute")
        took = []
        for _ in range(4):
            started = time.perf_counter()
            assert api.client.get("/health").status_code == 200
            took.append(time.perf_counter() - started)
    assert took[0] >= 0.9 and max(took[1:]) < 0.5, took


def test_a_trusted_proxy_names_the_client_and_what_the_client_wrote_is_not_believed(
    limited, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "")  # uvicorn --no-proxy-headers: the API sees the socket's peer
    api = limited(TRADELOOP_RATE_LIMIT_LOGIN="2/minute", TRADELOOP_TRUSTED_PROXIES="127.0.0.1")
    one, other = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "203.0.113.8"}
    for _ in range(2):
        assert api.client.post("/auth/login", json=WRONG, headers=one).status_code == 401
    _refused(api.client.post("/auth/login", json=WRONG, headers=one), 2)
    assert api.client.post("/auth/login", json=WRONG, headers=other).status_code == 401  # another client
    # the client wrote an address of its own on the left; the proxy appended the one it saw
    spoofed = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
    _refused(api.client.post("/auth/login", json=WRONG, headers=spoofed), 2)


def test_the_client_address_rules() -> None:
    def scope(peer: str, *forwarded: str) -> dict:
        return {"client": (peer, 5000), "headers": [(b"x-forwarded-for", f.encode()) for f in forwarded]}

    proxies = parse_networks("10.0.0.0/8, 127.0.0.1")
    assert client_ids(scope("198.51.100.9", "1.2.3.4"), proxies) == ("198.51.100.9",)  # untrusted peer: ignored
    assert client_ids(scope("10.1.1.1", "1.2.3.4, 10.2.2.2"), proxies) == ("1.2.3.4",)  # through two proxies
    assert client_ids(scope("10.1.1.1", "6.6.6.6", "1.2.3.4"), proxies) == ("1.2.3.4",)  # two headers, one list
    assert client_ids(scope("10.1.1.1", "10.3.3.3"), proxies) == ("10.3.3.3",)  # every hop a proxy: the leftmost
    # the peer is in the header: the server may have put it there, so the shared bucket counts too
    assert client_ids(scope("9.9.9.9", "9.9.9.9:1234"), ()) == ("9.9.9.9", FORWARDED)
    assert client_ids(scope("2001:db8::5", "[2001:db8::5]:443"), ()) == ("2001:db8::/64", FORWARDED)
    # IPv6 per /64; an IPv4-mapped IPv6 address is its IPv4 address
    assert client_ids(scope("2001:db8:1:2:aaaa::1"), ()) == client_ids(scope("2001:db8:1:2:bbbb::2"), ())
    assert client_ids(scope("2001:db8:1:2:aaaa::1"), ()) != client_ids(scope("2001:db8:1:3::1"), ())
    assert client_ids(scope("::ffff:192.0.2.1"), ()) == ("192.0.2.1",)
    with pytest.raises(ConfigError, match="TRADELOOP_TRUSTED_PROXIES"):
        parse_networks("10.0.0.0/8, proxy.internal")


def test_every_operation_documents_the_429_it_may_answer(sqlite_api: Api) -> None:
    schema = sqlite_api.client.get("/openapi.json").json()
    operations = [(path, verb, op) for path, item in schema["paths"].items() for verb, op in item.items()]
    assert len(operations) > 5
    for path, verb, op in operations:
        assert "429" in op["responses"], (verb, path)
        assert op["responses"]["429"]["content"]["application/problem+json"]["schema"] == {  # as answered
            "$ref": "#/components/schemas/Problem"
        }
