"""The acting principal and role checks. Services take a `Principal` and call `require_role` themselves,
so authorization holds whatever the caller (console, CLI, API) is."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from backend.errors import InvalidInput


class Role(StrEnum):
    viewer = "viewer"
    operator = "operator"
    admin = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Role.viewer: 0, Role.operator: 1, Role.admin: 2}


def parse_role(value: str) -> Role:
    """A role as a user typed it (CLI options), matched whole: `admin\n` is refused, not trimmed."""
    try:
        return Role(value)
    except ValueError:
        raise InvalidInput(f"unknown role {value!r}: choose admin, operator or viewer") from None


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role

    def has(self, minimum: Role) -> bool:
        return self.role.rank >= minimum.rank


SYSTEM = Principal("system", Role.admin)
"""The local CLI and background services act as `system` unless told `--as USER`."""


class PermissionDenied(PermissionError):
    """The principal's role does not allow the action; the message says which role is needed."""

    def __init__(self, principal: Principal, action: str, minimum: Role) -> None:
        super().__init__(f"{principal.name} ({principal.role}) may not {action}: needs role {minimum} or higher")
        self.principal, self.action, self.minimum = principal, action, minimum


def require_role(principal: Principal, minimum: Role, action: str) -> None:
    """Raise `PermissionDenied` unless the principal has at least `minimum`."""
    if not principal.has(minimum):
        raise PermissionDenied(principal, action, minimum)
