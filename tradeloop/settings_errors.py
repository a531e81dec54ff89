"""Settings that cannot be read, as one ``ConfigError`` naming each environment variable as written.

Rules:

* A top-level setting's problem is ``tradeloop.errors.config_error``'s: ``VARIABLE='value':
  what is wrong``, an unknown one with a did-you-mean.
* A venue's (``TRADELOOP_VENUES__<VENUE>__<FIELD>``, ``tradeloop.settings.VenueKeys``) names
  that variable as the environment spells it (``TRADELOOP_VENUES__OKX__APIKEY``), never its value
  (a key or a secret), and an unknown field lists the fields a venue takes.
* A value pydantic-settings cannot parse at all (``TRADELOOP_VENUES=okx``: not JSON) names the
  variable and the two ways to set it, never the value.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Any

from tradeloop.errors import ConfigError, config_error

WHAT = "settings (environment or .env)"


def venue_fields() -> list[str]:
    """The fields of a venue's entry as their variables spell them: ``API_KEY``, ``SECRET``, ..."""
    from tradeloop.settings import VenueKeys

    return [f.upper() for f in VenueKeys.model_fields]


def settings_error(exc: Exception) -> ConfigError:
    """One ConfigError from the settings' ``ValidationError`` (module rules)."""
    from tradeloop.settings import Settings, variable

    venues = variable("venues")
    mine: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    for err in exc.errors():  # type: ignore[attr-defined]
        (mine if err["loc"] and str(err["loc"][0]) in (venues, "venues") else rest).append(err)
    parts = [_venue_problem(err, venues) for err in mine]
    if rest:
        names = {name: variable(name) for name in Settings.model_fields}
        other = config_error(_Errors(rest), what=WHAT, model=Settings, names=names)
        parts.append(str(other).removeprefix(f"{WHAT}: "))
    return ConfigError(f"{WHAT}: " + "; ".join(parts))


def unreadable_setting(exc: Exception) -> ConfigError:
    """A pydantic-settings ``SettingsError`` (a value it cannot parse) as a ConfigError (module rules)."""
    from tradeloop.settings import Settings, variable

    found = re.search(r'field "(\w+)"', str(exc))
    field = found.group(1) if found and found.group(1) in Settings.model_fields else None
    if field != "venues":
        name = variable(field) if field else "a setting"
        return ConfigError(f"{WHAT}: {name} cannot be read ({exc}); fix or unset it")
    fields = ", ".join(venue_fields())
    return ConfigError(
        f"{WHAT}: {_as_written(variable('venues'))} cannot be read as venues (it is not a JSON object); set each "
        f"venue's fields one per variable, TRADELOOP_VENUES__<VENUE>__<FIELD> with FIELD one of {fields} (e.g. "
        'TRADELOOP_VENUES__OKX__API_KEY), or TRADELOOP_VENUES to a JSON object ({"okx": {"api_key": "..."}}); '
        "its value is not shown"
    )


def _venue_problem(err: dict[str, Any], venues: str) -> str:
    """One venue setting's problem, its value hidden (module rules)."""
    path = [str(p) for p in err["loc"][1:]]
    name = _as_written("__".join([venues, *(p.upper() for p in path)]))
    msg = str(err["msg"]).removeprefix("Value error, ")
    fields = venue_fields()
    if err["type"] == "extra_forbidden" and len(path) == 2:
        near = difflib.get_close_matches(path[1].upper(), fields, n=1)
        hint = f"; did you mean {venues}__{path[0].upper()}__{near[0]}?" if near else ""
        return f"{name} is unknown{hint} (a venue takes {', '.join(fields)})"
    if len(path) == 1:
        return (
            f"{name} is not one of a venue's settings: set {name}__<FIELD>, FIELD one of {', '.join(fields)} "
            "(its value is not shown)"
        )
    return f"{name} (value not shown): {msg[:1].lower()}{msg[1:]}"


def _as_written(name: str) -> str:
    """``name`` as the environment spells it (variables are read whatever their case)."""
    return next((k for k in os.environ if k.upper() == name.upper()), name)


class _Errors(Exception):
    """A ``ValidationError``'s errors, some of them, for ``config_error``."""

    def __init__(self, errors: list[dict[str, Any]]):
        self._errors = errors

    def errors(self) -> list[dict[str, Any]]:
        return self._errors
