"""The first admin of a deployment, from `ADMIN_PASSWORD`: `stream-platform db migrate` runs this after the schema
(`bootstrap_admin`); the demo makes one with a generated password when none is configured (`ensure_admin`).

A container stack has no interactive step where someone could add the first user, so the migrate job does it.
Idempotent: once an enabled admin exists nothing changes (a changed `ADMIN_PASSWORD` is not a password reset).
Without `ADMIN_PASSWORD` nothing is created — a generated password would have to be printed, and a deploy job's
output ends up in logs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import psycopg

from backend.config import Settings, get_settings
from backend.db import connect
from backend.identity.passwords import generate_password
from backend.identity.principal import SYSTEM, Role
from backend.identity.users import add_user

log = logging.getLogger(__name__)
FIRST_ADMIN = "admin"


@dataclass(frozen=True)
class FirstAdmin:
    name: str
    created: bool
    generated_password: str | None
    """Set only when this call created the admin with a generated password: print it once, then forget it."""


def _first_admin(conn: psycopg.Connection) -> str | None:
    """The oldest enabled admin's name, if there is one."""
    row = conn.execute("SELECT name FROM users WHERE role = %s AND NOT disabled ORDER BY created_at LIMIT 1",
                       (Role.admin.value,)).fetchone()
    return row["name"] if row else None


def ensure_admin(settings: Settings | None = None, name: str = FIRST_ADMIN) -> FirstAdmin:
    """Create the first admin unless one exists; the password is `ADMIN_PASSWORD` or generated."""
    settings = settings or get_settings()
    with connect(settings) as conn:
        if existing := _first_admin(conn):
            return FirstAdmin(existing, created=False, generated_password=None)
        configured = settings.admin_password.get_secret_value() if settings.admin_password else None
        password = configured or generate_password()
        add_user(conn, SYSTEM, name, Role.admin, password)
    log.info("created the first admin %r", name)
    return FirstAdmin(name, created=True, generated_password=None if configured else password)


@dataclass(frozen=True)
class Bootstrap:
    outcome: Literal["created", "exists", "no-password"]
    name: str | None

    def describe(self) -> str:
        """One line for the migrate job's output; never the password."""
        if self.outcome == "created":
            return f"created the first admin {self.name!r} from ADMIN_PASSWORD"
        if self.outcome == "exists":
            return f"admin {self.name!r} exists: ADMIN_PASSWORD left unused"
        return "no admin yet and ADMIN_PASSWORD is not set: set it and migrate again, or `users add NAME --role admin`"


def bootstrap_admin(settings: Settings, name: str = FIRST_ADMIN) -> Bootstrap:
    """Create the first admin from `ADMIN_PASSWORD` unless an enabled admin exists."""
    if settings.admin_password is None:
        with connect(settings) as conn:
            existing = _first_admin(conn)
        return Bootstrap("exists", existing) if existing else Bootstrap("no-password", None)
    admin = ensure_admin(settings, name)
    return Bootstrap("created" if admin.created else "exists", admin.name)
