"""Rate limits per user, per API key and per client IP (the ``limits`` library, moving window).

Rules:

1. **Buckets.** ``user``: a signed-in user's requests (``TRADELOOP_RATE_LIMIT_USER``).
   ``key``: an API key's requests (``TRADELOOP_RATE_LIMIT_API_KEY``); a key's requests do not
   spend its user's bucket. ``ip``: per client IP, every request without credentials and
   every request whose credentials were refused (a 401): someone guessing tokens or keys runs
   dry here, and while that IP's bucket is empty its requests are refused even with
   credentials (``TRADELOOP_RATE_LIMIT_IP``). ``login``: ``POST /auth/login`` per client IP,
   against password guessing (``TRADELOOP_RATE_LIMIT_LOGIN``). A limit set to "" is off.
2. **The client IP** is the socket's peer. ``X-Forwarded-For`` counts only when that peer is
   one of ``TRADELOOP_TRUSTED_PROXIES``: then the client is the rightmost address in it that
   is not itself a trusted proxy (what the client wrote on the left is never believed). When
   the server already replaced the peer with a forwarded address (uvicorn's
   ``--proxy-headers``, on by default for loopback) and that address is not trusted here, the
   request is counted in one shared bucket as well as the address's own (the server's choice
   cannot be told from a client naming itself): a spoofed header never earns a fresh bucket.
   IPv6 clients are counted per /64 (one host holds a whole /64).
3. **Headers.** A response that a limit applied to carries ``RateLimit-Limit``,
   ``RateLimit-Remaining``, ``RateLimit-Reset`` (seconds) and ``RateLimit-Policy`` (IETF
   draft) of the bucket closest to empty. A refusal is a 429 problem document with
   ``Retry-After``; the refused request does nothing.
4. **Storage.** Redis when ``REDIS_URL`` is set (keys under ``<TRADELOOP_REDIS_PREFIX>:ratelimit:``,
   shared by every API process), else memory (this process). If Redis cannot answer, the
   request is let through and the failure logged (at most once a minute), and Redis is not
   asked again for 5 s (a hung server must not add its timeout to every request): the limits
   protect the service, they are not the system of record.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import Problem, problem
from tradeloop.errors import ConfigError, TradeloopError
from tradeloop.observability import api_buckets, api_rate_limited
from tradeloop.settings import Settings

log = logging.getLogger(__name__)
LOGIN_PATH = "/auth/login"
STATE_KEY = "rate_limits"  # request.state: the quotas spent by this request
FORWARDED = "forwarded-by-the-server"  # rule 2's shared bucket
RETRY_STORAGE_S = 5.0  # rule 4: after a storage failure, requests pass unchecked this long before it is asked again
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
BUCKETS = {  # bucket -> (settings field, environment variable, who is counted)
    "user": ("rate_limit_user", "TRADELOOP_RATE_LIMIT_USER", "this user"),
    "key": ("rate_limit_api_key", "TRADELOOP_RATE_LIMIT_API_KEY", "this API key"),
    "ip": ("rate_limit_ip", "TRADELOOP_RATE_LIMIT_IP", "unauthenticated or refused requests from this address"),
    "login": ("rate_limit_login", "TRADELOOP_RATE_LIMIT_LOGIN", "sign-ins from this address"),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Quota:
    """Where a bucket stands after a request."""

    limit: int
    remaining: int
    reset_s: int  # seconds until the oldest request in the window leaves it
    window_s: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(0, self.remaining)),
            "RateLimit-Reset": str(self.reset_s),
            "RateLimit-Policy": f"{self.limit};w={self.window_s}",
        }


class RateLimitedError(TradeloopError):
    """A bucket is empty (429)."""

    def __init__(self, message: str, *, quota: Quota):
        super().__init__(message)
        self.quota = quota


def parse_networks(text: str) -> tuple[Network, ...]:
    """``TRADELOOP_TRUSTED_PROXIES``: comma-separated IPs or CIDR networks."""
    networks = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(
                f"TRADELOOP_TRUSTED_PROXIES has {part!r}, not an IP address or network; "
                "use e.g. 127.0.0.1,10.0.0.0/8 (or nothing: no proxy is trusted)"
            ) from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def _host(hop: str) -> str:
    """An ``X-Forwarded-For`` entry without its port (``1.2.3.4:80``, ``[::1]:80``)."""
    hop = hop.strip()
    if hop.startswith("[") and "]" in hop:
        return hop[1 : hop.index("]")]
    return hop.rsplit(":", 1)[0] if hop.count(":") == 1 else hop


def client_ids(scope: Scope, trusted: tuple[Network, ...]) -> tuple[str, ...]:
    """Rule 2: whom to count a request against (two identities when the peer may have been
    taken from the header: the request is counted against both)."""
    peer = (scope.get("client") or ("unknown", 0))[0]
    chain = [
        _host(hop)
        for name, value in scope.get("headers", ())
        if name == b"x-forwarded-for"
        for hop in value.decode("latin-1").split(",")
        if hop.strip()
    ]

    def is_trusted(host: str) -> bool:
        address = _address(host)
        return address is not None and any(address in net for net in trusted)

    def same(a: str, b: str) -> bool:
        x, y = _address(a), _address(b)
        return x == y if x is not None and y is not None else a == b

    if chain and is_trusted(peer):
        return (_identity(next((hop for hop in reversed(chain) if not is_trusted(hop)), chain[0])),)
    if any(same(peer, hop) for hop in chain):  # the server may have taken it from the header (rule 2)
        return _identity(peer), FORWARDED
    return (_identity(peer),)


def _identity(host: str) -> str:
    address = _address(host)
    if address is None:
        return host[:64]
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class RateLimiter:
    """The buckets of rule 1 over the storage of rule 4; built cheaply, connected at first use
    (inside the server's event loop)."""

    def __init__(self, settings: Settings):
        self.rules: dict[str, list[RateLimitItem]] = {
            bucket: _parse(getattr(settings, field), variable) for bucket, (field, variable, _) in BUCKETS.items()
        }
        self.trusted = parse_networks(settings.trusted_proxies)
        self._redis_url, self._prefix = settings.redis_url, f"{settings.redis_prefix}:ratelimit"
        self._storage: Storage | None = None
        self._pool: Any = None
        self._strategy: MovingWindowRateLimiter | None = None
        self._warned_at = self._down_until = -math.inf

    def _limiter(self) -> MovingWindowRateLimiter:
        if self._strategy is None:
            if self._redis_url:
                import redis.asyncio

                self._pool = redis.asyncio.ConnectionPool.from_url(
                    self._redis_url, socket_timeout=1.0, socket_connect_timeout=1.0
                )
                self._storage = RedisStorage(
                    f"async+{self._redis_url}", implementation="redispy", key_prefix=self._prefix,
                    wrap_exceptions=True, connection_pool=self._pool,
                )  # fmt: skip
            else:
                self._storage = MemoryStorage()
            self._strategy = MovingWindowRateLimiter(self._storage)
        return self._strategy

    async def hit(self, bucket: str, identity: str, *, spend: bool = True) -> Quota | None:
        """Spend one request of ``identity``'s ``bucket`` (``spend=False``: only look); the
        quota closest to empty, None when the bucket has no limit or the storage failed.
        Raises :class:`RateLimitedError` when a limit is reached."""
        closest: Quota | None = None
        if time.monotonic() < self._down_until:  # the storage failed a moment ago: no wait on every request
            return None
        for item in self.rules[bucket]:
            try:
                limiter = self._limiter()
                allowed = await (limiter.hit if spend else limiter.test)(item, bucket, identity)
                stats = await limiter.get_window_stats(item, bucket, identity)
            except StorageError as exc:
                self._storage_failed(exc)
                return None
            window = item.get_expiry()
            reset = max(0, min(window, math.ceil(stats.reset_time - time.time())))
            quota = Quota(limit=item.amount, remaining=stats.remaining, reset_s=reset, window_s=window)
            if not allowed:
                api_rate_limited(bucket)
                _, variable, who = BUCKETS[bucket]
                raise RateLimitedError(
                    f"too many requests: {who} may make {item.amount} per {_window(window)} ({variable}); "
                    f"try again in {max(1, reset)} s",
                    quota=quota,
                )
            if closest is None or quota.remaining < closest.remaining:
                closest = quota
        return closest

    def _storage_failed(self, exc: Exception) -> None:
        self._down_until = time.monotonic() + RETRY_STORAGE_S
        if time.monotonic() - self._warned_at > 60:
            self._warned_at = time.monotonic()
            log.warning("rate limits not checked: the limiter's storage failed (%s); requests pass unlimited", exc)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        self._strategy = self._storage = self._pool = None


def _parse(text: str, variable: str) -> list[RateLimitItem]:
    if not text.strip():
        return []
    try:
        return list(parse_many(text))
    except ValueError:
        raise ConfigError(
            f"{variable}={text!r} is not a rate limit; use e.g. '600/minute' or '10/second;600/hour' ('' turns it off)"
        ) from None


def _window(seconds: int) -> str:
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return unit if n == 1 else f"{n} {unit}s"
    return f"{seconds} s"


def _refusal(exc: RateLimitedError):
    headers = exc.quota.headers() | {"Retry-After": str(max(1, exc.quota.reset_s))}
    return problem(429, "Too many requests", str(exc), headers=headers)


def quotas(request: Request) -> list[Quota]:
    """The quotas this request spent (the list the middleware reads its headers from)."""
    found = getattr(request.state, STATE_KEY, None)
    if found is None:
        found = []
        setattr(request.state, STATE_KEY, found)
    return found


async def charge(request: Request, *, user_id: int, api_key_id: int | None) -> None:
    """Rule 1 for an authenticated caller: spend its key's or its user's bucket."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        return
    if api_key_id is not None:
        quota = await limiter.hit("key", str(api_key_id))
    else:
        quota = await limiter.hit("user", str(user_id))
    if quota is not None:
        quotas(request).append(quota)


class RateLimitMiddleware:
    """Rules 1 to 3 for what is known before authentication: the ``ip`` and ``login`` buckets,
    and the headers of every bucket the request spent."""

    def __init__(self, app: ASGIApp, *, limiter: RateLimiter):
        self.app, self.limiter = app, limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ids = client_ids(scope, self.limiter.trusted)
        if FORWARDED in ids:
            _warn_forwarded()
        spent: list[Quota] = scope.setdefault("state", {}).setdefault(STATE_KEY, [])
        headers = Headers(scope=scope)
        credentialed = "authorization" in headers or "x-api-key" in headers
        try:
            for ip in ids:
                if scope["method"] == "POST" and scope["path"] == LOGIN_PATH:
                    spent += filter(None, [await self.limiter.hit("login", ip)])
                if credentialed:  # spent only if refused (below); refused at once while the address is out
                    await self.limiter.hit("ip", ip, spend=False)
                else:
                    spent += filter(None, [await self.limiter.hit("ip", ip)])
        except RateLimitedError as exc:
            await _refusal(exc)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                if credentialed and message["status"] == 401:  # spent before the client can try again
                    for ip in ids:
                        try:
                            await self.limiter.hit("ip", ip)
                        except RateLimitedError:
                            pass  # the next one is refused
                if spent:
                    closest = min(spent, key=lambda q: q.remaining)
                    response_headers = MutableHeaders(scope=message)
                    for name, value in closest.headers().items():
                        if name not in response_headers:
                            response_headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


_forwarded_warned_at = -math.inf


def _warn_forwarded() -> None:
    global _forwarded_warned_at
    if time.monotonic() - _forwarded_warned_at > 3600:
        _forwarded_warned_at = time.monotonic()
        log.warning(
            "the server replaced the client address with one from X-Forwarded-For (uvicorn's --proxy-headers, "
            "FORWARDED_ALLOW_IPS) that TRADELOOP_TRUSTED_PROXIES does not trust: such requests share one rate-limit "
            "bucket; start uvicorn with --no-proxy-headers and list the proxies in TRADELOOP_TRUSTED_PROXIES"
        )


def install(app: FastAPI, settings: Settings) -> RateLimiter:
    """Add the middleware and the 429 handler; the limiter is ``app.state.rate_limiter``
    (``close()`` it at shutdown)."""
    limiter = RateLimiter(settings)
    app.state.rate_limiter = limiter
    api_buckets(BUCKETS)  # each bucket's refusals at 0 in /metrics
    app.router.responses.setdefault(  # every route (included after this) documents it
        429, {"model": Problem, "description": "a rate limit was reached: Retry-After says when to try again"}
    )
    app.add_middleware(RateLimitMiddleware, limiter=limiter)

    @app.exception_handler(RateLimitedError)
    async def limited(request: Request, exc: RateLimitedError):
        return _refusal(exc)

    return limiter
