"""User accounts: create, change password or role, disable, list, and authenticate with lockout."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from backend import audit
from backend.errors import InvalidInput, PlatformError
from backend.identity.passwords import hash_password, verify_password
from backend.identity.principal import SYSTEM, Principal, Role, require_role

_NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 10


class UserError(InvalidInput):
    """Invalid input or state; the message is safe to show."""


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None
    locked_until: datetime | None

    @property
    def principal(self) -> Principal:
        return Principal(self.name, self.role)


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UserError(
            f"invalid user name {name!r}: use 1-64 lower-case letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return name


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password too short: at least {MIN_PASSWORD_LENGTH} characters")
    return password


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise UserError(f"unknown role {value!r}: choose admin, operator or viewer") from None


def _row_to_user(row: dict) -> User:
    return User(
        name=row["name"],
        role=Role(row["role"]),
        disabled=row["disabled"],
        created_at=row["created_at"],
        last_login_at=row["last_login_at"],
        locked_until=row["locked_until"],
    )


_COLUMNS = "name, role, disabled, created_at, last_login_at, locked_until"


def add_user(conn: psycopg.Connection, actor: Principal, name: str, role: Role, password: str) -> User:
    require_role(actor, Role.admin, "create users")
    _check_name(name)
    _check_password(password)
    row = conn.execute(
        f"INSERT INTO users (name, password_hash, role) VALUES (%s, %s, %s) "
        f"ON CONFLICT (name) DO NOTHING RETURNING {_COLUMNS}",
        (name, hash_password(password), role.value),
    ).fetchone()
    if row is None:
        raise UserError(f"user {name!r} already exists")
    audit.record(conn, actor=actor.name, area="users", action="create", target=name, outcome="ok",
                 detail={"role": role.value})
    return _row_to_user(row)


def _update(conn: psycopg.Connection, actor: Principal, name: str, action: str, sql: str, params: tuple,
            detail: dict | None = None) -> User:
    require_role(actor, Role.admin, f"{action} users")
    row = conn.execute(
        f"UPDATE users SET {sql}, updated_at = now() WHERE name = %s RETURNING {_COLUMNS}", (*params, name)
    ).fetchone()
    if row is None:
        raise UserError(f"no user named {name!r}")
    audit.record(conn, actor=actor.name, area="users", action=action, target=name, outcome="ok", detail=detail)
    return _row_to_user(row)


def set_password(conn: psycopg.Connection, actor: Principal, name: str, password: str) -> User:
    _check_password(password)
    return _update(conn, actor, name, "passwd", "password_hash = %s, failed_logins = 0, locked_until = NULL",
                   (hash_password(password),))


def set_role(conn: psycopg.Connection, actor: Principal, name: str, role: Role) -> User:
    return _update(conn, actor, name, "role", "role = %s", (role.value,), {"role": role.value})


def set_disabled(conn: psycopg.Connection, actor: Principal, name: str, disabled: bool) -> User:
    return _update(conn, actor, name, "disable" if disabled else "enable", "disabled = %s", (disabled,))


def unlock(conn: psycopg.Connection, actor: Principal, name: str) -> User:
    return _update(conn, actor, name, "unlock", "failed_logins = 0, locked_until = NULL", ())


def list_users(conn: psycopg.Connection, actor: Principal) -> list[User]:
    require_role(actor, Role.admin, "list users")
    return [_row_to_user(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM users ORDER BY name")]


def get_user(conn: psycopg.Connection, name: str) -> User | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM users WHERE name = %s", (name,)).fetchone()
    return _row_to_user(row) if row else None


class LoginFailed(PlatformError):
    """Wrong name or password, disabled, or locked; the message never says which name exists."""

    http_status = 401


def authenticate(conn: psycopg.Connection, name: str, password: str, *, now: datetime | None = None) -> Principal:
    """Check a password; after `MAX_FAILED_LOGINS` failures the account locks for `LOCKOUT`."""
    now = now or datetime.now(UTC)
    row = conn.execute(
        "SELECT name, role, disabled, password_hash, failed_logins, locked_until FROM users WHERE name = %s "
        "FOR UPDATE",
        (name,),
    ).fetchone()
    ok = verify_password(row["password_hash"] if row else None, password)
    if row and row["locked_until"] and row["locked_until"] > now:
        _login_audit(conn, name, "denied", "locked")
        raise LoginFailed(f"account locked until {row['locked_until']:%H:%M UTC} after repeated failures")
    if not row or not ok or row["disabled"]:
        if row and not row["disabled"]:
            failures = row["failed_logins"] + 1
            locked = now + LOCKOUT if failures >= MAX_FAILED_LOGINS else None
            conn.execute("UPDATE users SET failed_logins = %s, locked_until = %s WHERE name = %s",
                         (0 if locked else failures, locked, name))
        _login_audit(conn, name, "denied", "bad credentials" if not row or not ok else "disabled")
        raise LoginFailed("wrong user name or password, or the account is disabled")
    conn.execute("UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = %s WHERE name = %s",
                 (now, name))
    _login_audit(conn, name, "ok", None)
    return Principal(row["name"], Role(row["role"]))


def _login_audit(conn: psycopg.Connection, name: str, outcome: str, reason: str | None) -> None:
    audit.record(conn, actor=name, area="users", action="login", target=name, outcome=outcome,  # type: ignore[arg-type]
                 detail={"reason": reason} if reason else None)


def resolve_principal(conn: psycopg.Connection, name: str | None) -> Principal:
    """The principal for `--as NAME`; `None` means the local `system` admin."""
    if name is None or name == SYSTEM.name:
        return SYSTEM
    user = get_user(conn, name)
    if user is None:
        raise UserError(f"no user named {name!r} (for --as)")
    if user.disabled:
        raise UserError(f"user {name!r} is disabled")
    return user.principal
