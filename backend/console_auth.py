"""Console sign-in: password login with lockout, OIDC e-mail mapping, session re-checks and the first admin.

The console keeps only the `Principal` in its session; every rerun re-reads the user so a disabled account or a
changed role takes effect at once. Failed logins are committed even though `authenticate` raises, otherwise the
lockout counter would roll back with the error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from backend import audit
from backend.config import Settings, get_settings
from backend.db import connect
from backend.identity.passwords import generate_password
from backend.identity.principal import SYSTEM, Principal, Role
from backend.identity.users import LoginFailed, add_user, authenticate, get_user

log = logging.getLogger(__name__)


def login(name: str, password: str, settings: Settings | None = None) -> Principal:
    """Check a user name and password; raises `LoginFailed` (and counts the failure towards lockout)."""
    name = name.strip().lower()
    if not name or not password:
        raise LoginFailed("enter a user name and a password")
    with connect(settings or get_settings()) as conn:
        try:
            return authenticate(conn, name, password)
        finally:
            conn.commit()


def login_oidc(email: str, settings: Settings | None = None) -> Principal:
    """The principal for an e-mail the identity provider vouched for: the user of that name must exist."""
    name = email.strip().lower()
    with connect(settings or get_settings()) as conn:
        user = get_user(conn, name) if name else None
        ok = user is not None and not user.disabled
        audit.record(conn, actor=name or "?", area="users", action="login", target=name or None,
                     outcome="ok" if ok else "denied", detail={"method": "oidc"})
        conn.commit()
    if not ok:
        raise LoginFailed(f"{email} has no console account (or it is disabled): ask an admin to add it")
    return user.principal  # type: ignore[union-attr]


def current(principal: Principal, settings: Settings | None = None) -> Principal | None:
    """The principal as the users table says now: `None` once the user is gone or disabled."""
    with connect(settings or get_settings()) as conn:
        user = get_user(conn, principal.name)
    if user is None or user.disabled:
        return None
    return user.principal


@dataclass(frozen=True)
class FirstAdmin:
    name: str
    created: bool
    generated_password: str | None
    """Set only when this call created the admin with a generated password: print it once, then forget it."""


def ensure_admin(settings: Settings | None = None, name: str = "admin") -> FirstAdmin:
    """Create the first admin unless one exists; the password is `ADMIN_PASSWORD` or generated."""
    settings = settings or get_settings()
    with connect(settings) as conn:
        existing = conn.execute("SELECT name FROM users WHERE role = %s AND NOT disabled ORDER BY created_at LIMIT 1",
                                (Role.admin.value,)).fetchone()
        if existing:
            return FirstAdmin(existing["name"], created=False, generated_password=None)
        configured = settings.admin_password.get_secret_value() if settings.admin_password else None
        password = configured or generate_password()
        add_user(conn, SYSTEM, name, Role.admin, password)
    log.info("created the first admin %r", name)
    return FirstAdmin(name, created=True, generated_password=None if configured else password)
