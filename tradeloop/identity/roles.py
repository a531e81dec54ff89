"""Roles of users and scopes of API keys.

A role includes the ones below it: ``viewer`` reads, ``trader`` also acts on sessions
(create, start, pause, resume, stop, ack), submits jobs and overrides thresholds, ``admin``
also manages users, promotes and rolls back models, and sees everyone's resources.

An API key acts as its user, narrowed by its scopes: ``read`` (a viewer's rights) and
``trade`` (a trader's, needs a user who is at least a trader). A key never has admin rights.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    TRADER = "trader"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Role) -> bool:
        """Whether this role includes ``needed``."""
        return self.rank >= needed.rank


_RANK = {Role.VIEWER: 0, Role.TRADER: 1, Role.ADMIN: 2}


class Scope(StrEnum):
    READ = "read"
    TRADE = "trade"

    @property
    def role(self) -> Role:
        """The most a key with only this scope can do."""
        return Role.TRADER if self is Scope.TRADE else Role.VIEWER
