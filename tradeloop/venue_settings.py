"""One venue's settings (``TRADELOOP_VENUES__<VENUE>__<FIELD>``, ``tradeloop.settings``).

Rules:

* A venue is named by its ccxt id, in any case (``OKX`` in the JSON form is ``okx``, as
  ``TRADELOOP_VENUES__OKX__...`` is); one that is not a ccxt id, or one given twice, is refused.
* A blank value (empty or spaces: ``TRADELOOP_VENUES__OKX__API_KEY=``) is unset, never an empty key.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class VenueKeys(BaseModel):
    """One venue's exchange keys and URL overrides (``TRADELOOP_VENUES__<VENUE>__<FIELD>``), for a
    live session whose instruments span several venues (``live.venue_keys``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr | None = None
    secret: SecretStr | None = None
    password: SecretStr | None = None
    api_url: str | None = Field(default=None, description="override of the venue's public REST base URL")
    ws_url: str | None = Field(default=None, description="override of the venue's WebSocket URL (ccxt.pro)")

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """``TRADELOOP_VENUES__OKX__API_KEY=`` (blank) is unset, as a blank top-level key is."""
        return blank_is_none(value)


def blank_is_none(value: object) -> object:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return None if isinstance(value, str) and not value.strip() else value


def venue_ids_lowercase(value: object) -> object:
    """``{"OKX": ...}`` as ``{"okx": ...}`` (module rules)."""
    if not isinstance(value, dict):
        return value
    out: dict[str, object] = {}
    for key, entry in value.items():
        venue = str(key).strip().lower()
        if venue in out:
            raise ValueError(f"venue {venue!r} is given twice, in two cases of its name; give it once, as {venue!r}")
        out[venue] = entry
    return out


def known_venues(value: dict[str, VenueKeys]) -> dict[str, VenueKeys]:
    """``value`` when every venue is a ccxt id (module rules)."""
    if not value:
        return value
    import ccxt

    unknown = sorted(v for v in value if v not in ccxt.exchanges)
    if unknown:
        raise ValueError(
            f"{unknown} are not ccxt exchange ids; name each venue by its ccxt id, e.g. "
            "TRADELOOP_VENUES__OKX__API_KEY for okx"
        )
    return value
