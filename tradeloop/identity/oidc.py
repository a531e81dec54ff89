"""Sign-in through an external OpenID Connect provider (Supabase Auth, Keycloak, any OIDC
provider): its tokens stand in for local passwords.

Rules:

1. **Configuration.** ``oidc_issuer`` and ``oidc_audience`` go together. The issuer is an
   ``https://`` URL (``http://`` only to a loopback host: a provider on this machine).
2. **Discovery.** ``<issuer>/.well-known/openid-configuration`` is read once, on the first
   provider token (nothing is fetched at construction), with a timeout; a read, so a
   connection error, a timeout, a 429 or a 5xx is retried with backoff (3 tries), another
   answer is not. The document's ``issuer`` must equal the configured one exactly (OpenID
   Connect Discovery 1.0, section 4.3) and its ``jwks_uri`` follows rule 1's scheme rule.
3. **Keys.** The provider's JWKS is cached (:data:`JWKS_CACHE_S`). A token whose ``kid`` is
   not in the cached set makes one refetch (the provider rotated its key), at most once per
   ``refetch_cooldown_s``, so tokens with made-up ``kid`` values cannot flood the provider;
   a ``kid`` still unknown afterwards is refused.
4. **Algorithms.** Only RS256 and ES256, read from the header before any key is looked up and
   required to be the key's own algorithm: ``none``, every HS* (a public key used as an HMAC
   secret) and everything else are refused. Our own access tokens are HS256 only
   (``tradeloop.identity.tokens``): the two never verify each other's.
5. **Claims.** ``iss`` equals the issuer, ``aud`` is or contains the audience, ``sub`` and
   ``exp`` are present; expiry, ``nbf`` and ``iat`` are judged against the caller's clock
   (``now``) with :data:`LEEWAY_S` of skew.
6. **Role.** ``oidc_role_claim`` is a dotted path into the claims (``tradeloop_role``,
   ``app_metadata.tradeloop_role`` for Supabase, ``resource_access.<client>.roles`` or
   ``realm_access.roles`` for Keycloak). A string or a list of strings; the highest of the
   values that name a role (viewer, trader, admin; case-insensitive) wins; none: the default
   role. The role is read from every token, so the provider decides it.
7. **Local user** (``tradeloop.identity.provider_users``). A provider's subject is the local
   user whose ``external_subject`` is ``issuer|sub``: created on first sight (no password),
   named after ``preferred_username``, then ``email``, then ``sub`` (made unique: a provider
   user is never joined to an existing account by name, or a provider user named "admin"
   would become the local admin). A disabled local user is refused.
8. **Errors** are :class:`~tradeloop.errors.AuthError` saying why; none repeats the token.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import jwt

from tradeloop.errors import AuthError, ConfigError
from tradeloop.identity.provider_users import ProviderIdentity, external_subject, role_from_claims
from tradeloop.identity.roles import Role
from tradeloop.retry import RetryPolicy
from tradeloop.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

ALGORITHMS = ("RS256", "ES256")
LEEWAY_S = 30
JWKS_CACHE_S = 300
DISCOVERY_PATH = "/.well-known/openid-configuration"
READ_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.2, max_delay_s=1.0)


class _Retryable(Exception):
    """A read that may succeed if asked again (rule 2)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class OidcConfig:
    """Which provider to trust and how to read its tokens (module rules 1, 5 and 6)."""

    issuer: str
    audience: str
    role_claim: str = "tradeloop_role"
    default_role: Role = Role.VIEWER
    timeout_s: float = 5.0
    refetch_cooldown_s: float = 10.0

    def __post_init__(self) -> None:
        _check_url(self.issuer, "TRADELOOP_OIDC_ISSUER")
        if not self.audience:
            raise ConfigError(
                "TRADELOOP_OIDC_AUDIENCE is empty: set it to the `aud` the provider puts in tokens for this API "
                "(Supabase: 'authenticated'; Keycloak: the client id an audience mapper adds)"
            )
        if not self.role_claim or any(not part for part in self.role_claim.split(".")):
            raise ConfigError(
                f"TRADELOOP_OIDC_ROLE_CLAIM={self.role_claim!r}: use a claim name or a dotted path "
                "(e.g. 'tradeloop_role' or 'app_metadata.tradeloop_role')"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcConfig | None:
        """The configured provider, or None when ``oidc_issuer`` is unset (local sign-in only)."""
        if not settings.oidc_issuer:
            return None
        if not settings.oidc_audience:
            raise ConfigError(
                "TRADELOOP_OIDC_ISSUER is set but TRADELOOP_OIDC_AUDIENCE is not: set the `aud` the "
                "provider puts in tokens for this API (Supabase: 'authenticated')"
            )
        return cls(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            role_claim=settings.oidc_role_claim,
            default_role=Role(settings.oidc_default_role),
        )


def is_provider_token(token: str) -> bool:
    """Whether the token's (unverified) header names a provider algorithm (RS256/ES256): such a
    token goes to :class:`OidcVerifier`, every other to our own HS256 check."""
    try:
        return jwt.get_unverified_header(token).get("alg") in ALGORITHMS
    except jwt.PyJWTError:
        return False


class OidcVerifier:
    """Verifies a provider's tokens (module rules 2 to 6). Construct cheaply: nothing is fetched
    until the first :meth:`verify`. Safe to share between threads."""

    def __init__(
        self, config: OidcConfig, *, retry: RetryPolicy = READ_RETRY, sleep: Callable[[float], None] = time.sleep
    ):
        self.config, self._retry, self._sleep = config, retry, sleep
        self._lock = threading.Lock()
        self._jwks: _JwksClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcVerifier | None:
        config = OidcConfig.from_settings(settings)
        return cls(config) if config is not None else None

    def discover(self) -> dict[str, Any]:
        """The provider's discovery document (rule 2), fetched now."""
        url = self.config.issuer.rstrip("/") + DISCOVERY_PATH
        document = self._read(lambda: _get_json(url, timeout_s=self.config.timeout_s), what=url)
        if document.get("issuer") != self.config.issuer:
            raise AuthError(
                f"the identity provider's discovery document at {url} names issuer {document.get('issuer')!r}, "
                f"not the configured {self.config.issuer!r}: set TRADELOOP_OIDC_ISSUER to exactly the provider's issuer"
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise AuthError(f"the identity provider's discovery document at {url} has no jwks_uri")
        _check_url(jwks_uri, "the provider's jwks_uri", error=AuthError)
        return document

    def _keys(self) -> _JwksClient:
        with self._lock:
            if self._jwks is None:
                uri = self.discover()["jwks_uri"]
                self._jwks = _JwksClient(
                    uri,
                    lifespan=JWKS_CACHE_S,
                    timeout=self.config.timeout_s,
                    cooldown_duration=self.config.refetch_cooldown_s,
                    reader=self._read,
                )
            return self._jwks

    def verify(self, token: str, *, now: int) -> ProviderIdentity:
        """The identity a provider token proves (rules 3 to 6); ``AuthError`` saying why not."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"the bearer token is not a JWT ({exc})") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise AuthError(f"the provider token's algorithm {alg!r} is not accepted; only {', '.join(ALGORITHMS)}")
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise AuthError(f"the provider token cannot be read ({exc})") from None
        if unverified.get("iss") != self.config.issuer:  # before any key lookup: foreign tokens fetch nothing
            raise AuthError(f"the provider token was not issued by {self.config.issuer}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("the provider token names no signing key (no `kid` in its header)")
        try:
            key = self._keys().get_signing_key(kid)
        except jwt.PyJWKClientConnectionError:
            raise AuthError(
                f"the identity provider's keys could not be fetched ({self.config.issuer}); try again later"
            ) from None
        except jwt.PyJWKClientError:
            raise AuthError(
                f"the provider token is signed with key {kid[:64]!r}, which the provider does not publish"
            ) from None
        except jwt.PyJWTError as exc:  # a key set with no usable key
            raise AuthError(f"the identity provider's keys are unusable ({exc})") from None
        if key.algorithm_name not in ALGORITHMS:
            raise AuthError(f"the provider's key {kid[:64]!r} is for {key.algorithm_name}, which is not accepted")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=self.config.audience,
                issuer=self.config.issuer,
                options={
                    "require": ["iss", "aud", "sub", "exp"],
                    "verify_exp": False,  # judged below against the caller's clock
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAudienceError:
            raise AuthError(
                f"the provider token is not for this API (its audience is not {self.config.audience!r})"
            ) from None
        except jwt.InvalidIssuerError:
            raise AuthError(f"the provider token was not issued by {self.config.issuer}") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"the provider token is invalid ({exc})") from None
        return self._identity(claims, now=now)

    def _identity(self, claims: Mapping[str, Any], *, now: int) -> ProviderIdentity:
        if _number(claims, "exp") + LEEWAY_S < now:
            raise AuthError("the provider token expired; sign in again with the identity provider")
        for name in ("nbf", "iat"):
            if name in claims and _number(claims, name) - LEEWAY_S > now:
                raise AuthError(f"the provider token is not valid yet (its {name} is in the future)")
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise AuthError("the provider token's subject (sub) is empty or not a string")
        return ProviderIdentity(
            subject=external_subject(self.config.issuer, sub),
            username=_username_hint(claims),
            role=role_from_claims(claims, path=self.config.role_claim, default=self.config.default_role),
            expires_at=int(claims["exp"]),
        )

    def _read(self, fn: Callable[[], T], *, what: str) -> T:
        rng = random.Random()
        for attempt in range(1, self._retry.max_attempts + 1):
            try:
                return fn()
            except _Retryable as exc:
                if attempt == self._retry.max_attempts:
                    raise AuthError(
                        f"the identity provider did not answer {what} ({exc}) after {attempt} tries; try again later"
                    ) from None
                wait = self._retry.delay(attempt, exc, rng)
                log.warning("identity provider: %s (attempt %d), retrying in %.2fs", exc, attempt, wait)
                self._sleep(wait)
        raise AssertionError("unreachable")


class _JwksClient(jwt.PyJWKClient):
    """pyjwt's JWKS client (cache, timeout, one refetch per unknown kid after its cooldown),
    its fetch retried as a read (rule 2)."""

    def __init__(self, uri: str, *, reader: Callable[..., Any], **options: Any):
        super().__init__(uri, **options)
        self._reader = reader

    def fetch_data(self) -> Any:
        def once() -> Any:
            try:
                return super(_JwksClient, self).fetch_data()
            except jwt.PyJWKClientConnectionError as exc:
                raise _Retryable(str(exc)) from exc

        try:
            return self._reader(once, what=self.uri)
        except AuthError as exc:
            raise jwt.PyJWKClientConnectionError(str(exc)) from None


def _get_json(url: str, *, timeout_s: float) -> dict[str, Any]:
    try:
        answer = httpx.get(url, timeout=timeout_s, follow_redirects=False, headers={"Accept": "application/json"})
    except httpx.TransportError as exc:
        raise _Retryable(type(exc).__name__) from exc
    if answer.status_code == 429 or answer.status_code >= 500:
        raise _Retryable(f"HTTP {answer.status_code}")
    if answer.status_code != 200:
        raise AuthError(
            f"the identity provider answered HTTP {answer.status_code} at {url}: check TRADELOOP_OIDC_ISSUER"
        )
    try:
        document = answer.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise AuthError(f"the identity provider's answer at {url} is not a JSON object")
    return document


def _check_url(url: str, name: str, *, error: type[Exception] = ConfigError) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _loopback(parts.hostname):
        return
    raise error(
        f"{name}={url!r}: use an https:// URL (http:// only to a provider on this machine, e.g. http://127.0.0.1:9000)"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthError(f"the provider token's {name} claim is not a number")
    return float(value)


def _username_hint(claims: Mapping[str, Any]) -> str:
    for name in ("preferred_username", "email", "sub"):
        value = claims.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return "user"
