"""Who is reading the dashboard, and which trading sessions they may see.

Rules:

1. **No identity provider** (``TRADELOOP_OIDC_ISSUER`` unset): the dashboard is the single
   operator's tool, served on 127.0.0.1 only (``tradeloop dashboard`` refuses another
   address), and shows every session.
2. **With a provider**, nothing but a sign-in prompt shows until the reader signs in through
   it (Streamlit's ``st.login``, configured in ``.streamlit/secrets.toml`` ``[auth]`` with the
   provider's ``server_metadata_url``). The ID token's issuer must be the configured one.
3. **Ownership as the API's** (``api.deps.Principal.can_see``): a reader sees the sessions whose
   ``owner_id`` is the local user the API made for their subject (``issuer|sub``); an admin
   (the role claim, read as the API reads it) sees every one. A subject the API has not seen
   yet owns nothing, and a locally disabled user is refused. The dashboard reads only: it never
   creates the user.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import streamlit as st

from tradeloop.errors import AuthError
from tradeloop.identity import OidcConfig, Role, external_subject, provider_user_or_none, role_from_claims
from tradeloop.ops import OpsStore, TradingSession
from tradeloop.settings import get_settings


@dataclass(frozen=True, kw_only=True, slots=True)
class Reader:
    """The dashboard's reader: a local user (``user_id``), or the operator (rule 1)."""

    user_id: int | None
    admin: bool
    name: str


OPERATOR = Reader(user_id=None, admin=True, name="operator")
NOBODY = Reader(user_id=None, admin=False, name="not signed in")


def visible_sessions(sessions: Iterable[TradingSession], reader: Reader) -> list[TradingSession]:
    """Rule 3: the sessions ``reader`` may see, in their order."""
    return [s for s in sessions if reader.admin or (reader.user_id is not None and s.owner_id == reader.user_id)]


def reader_from_claims(claims: Mapping[str, Any], *, config: OidcConfig, store: OpsStore | None) -> Reader:
    """Rules 2 and 3: the reader an ID token's ``claims`` (``st.user``) name."""
    if claims.get("iss") != config.issuer:
        raise AuthError(
            f"you signed in through {claims.get('iss')!r}, but this deployment trusts {config.issuer}: point "
            f"[auth] server_metadata_url in .streamlit/secrets.toml at {config.issuer}/.well-known/openid-configuration"
        )
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise AuthError("the identity provider's ID token names no subject (sub)")
    role = role_from_claims(claims, path=config.role_claim, default=config.default_role)
    user = provider_user_or_none(store, external_subject(config.issuer, sub)) if store is not None else None
    if user is not None and user.disabled:
        raise AuthError("the account is disabled")
    name = user.username if user is not None else str(claims.get("preferred_username") or claims.get("email") or sub)
    return Reader(user_id=user.id if user is not None else None, admin=role is Role.ADMIN, name=name)


def provider() -> OidcConfig | None:
    return OidcConfig.from_settings(get_settings())


def signed_in() -> bool:
    """Whether the reader has signed in (``st.user`` has no ``is_logged_in`` before ``[auth]`` is configured)."""
    return bool(st.user.to_dict().get("is_logged_in"))


def reader(store: OpsStore | None) -> Reader:
    """The current reader (every page asks through ``sources``)."""
    config = provider()
    if config is None:
        return OPERATOR
    if not signed_in():
        return NOBODY
    return reader_from_claims(st.user.to_dict(), config=config, store=store)


def sign_in_gate(store: Callable[[], OpsStore | None]) -> None:
    """Rule 2, before any page: the sign-in prompt (and nothing else) until the reader has
    signed in; then who they are, and a sign-out button, in the sidebar."""
    config = provider()
    if config is None:
        return
    if not signed_in():
        _prompt(config)
        st.stop()
    try:
        who = reader(store())
    except AuthError as exc:
        st.error(str(exc))
        st.button("Sign out", on_click=st.logout)
        st.stop()
    st.sidebar.caption(f"Signed in as **{who.name}**" + (" (admin: every session)" if who.admin else ""))
    st.sidebar.button("Sign out", on_click=st.logout, key="sign-out")


def _prompt(config: OidcConfig) -> None:
    st.title("Sign in")
    st.write(
        f"This dashboard is shared: sign in through your identity provider ({config.issuer}) "
        "to see your trading sessions."
    )
    missing = None
    if importlib.util.find_spec("authlib") is None:
        missing = "Streamlit's sign-in needs Authlib: `pip install 'Authlib>=1.3.2'` into the dashboard's environment."
    elif not st.secrets.load_if_toml_exists() or "auth" not in st.secrets:
        missing = (
            "Sign-in is not configured: add an `[auth]` section to `.streamlit/secrets.toml` with `redirect_uri` "
            "(this dashboard's address + `/oauth2callback`), `cookie_secret`, `client_id`, `client_secret` and "
            f'`server_metadata_url = "{config.issuer}/.well-known/openid-configuration"`.'
        )
    if missing:
        st.warning(missing, icon=":material/key:")
    st.button("Sign in", on_click=st.login, type="primary", disabled=missing is not None, icon=":material/login:")
