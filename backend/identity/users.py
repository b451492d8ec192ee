"""User accounts: create, change password or role, disable, list, and authenticate with throttling."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn

import psycopg

from backend import audit
from backend.errors import InvalidInput, PlatformError
from backend.identity import throttle
from backend.identity.passwords import hash_password, verify_password
from backend.identity.principal import SYSTEM, Principal, Role, require_role

log = logging.getLogger(__name__)
_NAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
RESERVED_NAMES = frozenset({SYSTEM.name})
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
    """Every name that enters the users table passes here: whole-string match, and not a reserved name."""
    if not _NAME.fullmatch(name):
        raise UserError(
            f"invalid user name {name!r}: use 1-64 lower-case letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    if name in RESERVED_NAMES:
        raise UserError(f"the user name {name!r} is reserved for the local CLI and background services")
    return name


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password too short: at least {MIN_PASSWORD_LENGTH} characters")
    return password


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
    user = _update(conn, actor, name, "passwd", "password_hash = %s, failed_logins = 0, locked_until = NULL",
                   (hash_password(password),))
    throttle.forget_account(conn, name)
    return user


def set_role(conn: psycopg.Connection, actor: Principal, name: str, role: Role) -> User:
    return _update(conn, actor, name, "role", "role = %s", (role.value,), {"role": role.value})


def set_disabled(conn: psycopg.Connection, actor: Principal, name: str, disabled: bool) -> User:
    return _update(conn, actor, name, "disable" if disabled else "enable", "disabled = %s", (disabled,))


def unlock(conn: psycopg.Connection, actor: Principal, name: str) -> User:
    """Lift an account lock, and forget the failures that led to it (else a few more would lock it again)."""
    user = _update(conn, actor, name, "unlock", "failed_logins = 0, locked_until = NULL", ())
    throttle.forget_account(conn, name)
    return user


def list_users(conn: psycopg.Connection, actor: Principal) -> list[User]:
    require_role(actor, Role.admin, "list users")
    return [_row_to_user(r) for r in conn.execute(f"SELECT {_COLUMNS} FROM users ORDER BY name")]


def get_user(conn: psycopg.Connection, name: str) -> User | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM users WHERE name = %s", (name,)).fetchone()
    return _row_to_user(row) if row else None


class LoginFailed(PlatformError):
    """A refused sign-in. The message is the same whatever the reason, so it tells a guesser nothing (which names
    exist, which are locked or disabled); `reason` goes to the audit log and the server log for operators."""

    http_status = 401
    MESSAGE = "invalid credentials or locked"

    def __init__(self, reason: str) -> None:
        super().__init__(self.MESSAGE)
        self.reason = reason


def authenticate(conn: psycopg.Connection, name: str, password: str, *, addr: str, now: datetime | None = None,
                 policy: throttle.SignInPolicy | None = None) -> Principal:
    """Check a password from a client address (see `throttle`): failures back the address off; an account locks
    only when many addresses fail against it. An address that must wait is refused without checking anything."""
    now = now or datetime.now(UTC)
    policy = policy or throttle.SignInPolicy()
    key = throttle.client_key(addr)
    waiting = throttle.hold_address(conn, key)
    if waiting is not None and waiting.locked(now):
        _refuse(conn, name, key, "address throttled")
    row = conn.execute(
        "SELECT name, role, disabled, password_hash, failed_logins, locked_until FROM users WHERE name = %s "
        "FOR UPDATE",
        (name,),
    ).fetchone()
    ok = verify_password(row["password_hash"] if row else None, password)
    if row and row["locked_until"] and row["locked_until"] > now:
        reason = "account locked"
    elif not row or not ok:
        reason = "bad credentials"
    elif row["disabled"]:
        reason = "disabled"
    else:
        conn.execute("UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = %s WHERE name = %s",
                     (now, name))
        throttle.forget_account(conn, name)
        _login_audit(conn, name, "ok", None, key)
        return Principal(row["name"], Role(row["role"]))
    throttle.address_failed(conn, waiting, key, now, policy)
    if row and reason == "bad credentials" and not row["disabled"]:
        locked = throttle.account_failed(conn, name, key, now, policy)
        conn.execute("UPDATE users SET failed_logins = %s, locked_until = %s WHERE name = %s",
                     (0 if locked else row["failed_logins"] + 1, locked, name))
    _refuse(conn, name, key, reason)


def _refuse(conn: psycopg.Connection, name: str, key: str, reason: str) -> NoReturn:
    _login_audit(conn, name, "denied", reason, key)
    log.warning("sign-in refused for %r from %s: %s", name, key, reason)
    raise LoginFailed(reason)


def _login_audit(conn: psycopg.Connection, name: str, outcome: audit.Outcome, reason: str | None, key: str) -> None:
    detail = {"reason": reason, "addr": key} if reason else {"addr": key}
    audit.record(conn, actor=name, area="users", action="login", target=name, outcome=outcome, detail=detail)


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
