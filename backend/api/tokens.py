"""Bearer API tokens: create (shown once), list, revoke, and authenticate a presented token.

A token reads `spt_<key_id>_<secret>`. The public key id selects the row; the secret (256 random bits) is stored
only as its SHA-256 and compared in constant time, so a leaked table reveals no usable token. The secret never
appears in logs, audit rows, reprs or errors.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from backend import audit
from backend.errors import InvalidInput, NotFound
from backend.identity.principal import Principal, Role, require_role

PREFIX = "spt_"
LAST_USED_RESOLUTION = timedelta(minutes=1)
"""`last_used_at` is refreshed at most this often, so authentication stays a read on the hot path."""

_NAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
_TOKEN = re.compile(r"spt_(?P<key_id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})")
"""Both are used with `fullmatch`: `match("^…$")` would accept a trailing newline."""
_COLUMNS = "key_id, name, role, created_by, created_at, expires_at, last_used_at, revoked_at, revoked_by"


@dataclass(frozen=True)
class ApiToken:
    """A token's metadata; never its secret."""

    key_id: str
    name: str
    role: Role
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None

    @property
    def principal(self) -> Principal:
        return Principal(f"token:{self.name}", self.role)

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


@dataclass(frozen=True)
class IssuedToken:
    """A freshly created token: `value` is shown to the caller once and is not recoverable afterwards."""

    token: ApiToken
    value: str = field(repr=False)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _row(row: dict) -> ApiToken:
    return ApiToken(**{**row, "role": Role(row["role"])})


def create_token(
    conn: psycopg.Connection, actor: Principal, name: str, role: Role, *, expires_in_days: int | None = None
) -> IssuedToken:
    """Issue a token for `role` (admin only); audited without the secret."""
    require_role(actor, Role.admin, "create API tokens")
    if not _NAME.fullmatch(name):
        raise InvalidInput(f"invalid token name {name!r}: use 1-64 lower-case letters, digits, '.', '_', '@' or '-'")
    if expires_in_days is not None and expires_in_days < 1:
        raise InvalidInput("expires_in_days must be 1 or more")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    try:
        with conn.transaction():
            row = conn.execute(
                f"INSERT INTO api_tokens (key_id, name, secret_hash, role, created_by, expires_at) "
                f"VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                (key_id, name, _digest(secret), role.value, actor.name, expires),
            ).fetchone()
    except psycopg.errors.UniqueViolation:
        raise InvalidInput(f"a live API token named {name!r} already exists: revoke it first") from None
    audit.record(conn, actor=actor.name, area="api", action="token.create", target=name, outcome="ok",
                 detail={"role": role.value, "key_id": key_id, "expires_at": expires.isoformat() if expires else None})
    return IssuedToken(_row(row), f"{PREFIX}{key_id}_{secret}")


def list_tokens(conn: psycopg.Connection, actor: Principal, *, include_revoked: bool = False) -> list[ApiToken]:
    """Tokens newest first (admin only); revoked ones on request."""
    require_role(actor, Role.admin, "list API tokens")
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM api_tokens WHERE %s OR revoked_at IS NULL ORDER BY created_at DESC",
        (include_revoked,),
    )
    return [_row(r) for r in rows]


def revoke_token(conn: psycopg.Connection, actor: Principal, name: str) -> ApiToken:
    """Revoke the live token called `name` (admin only); it stops working on its next request."""
    require_role(actor, Role.admin, "revoke API tokens")
    row = conn.execute(
        f"UPDATE api_tokens SET revoked_at = now(), revoked_by = %s WHERE name = %s AND revoked_at IS NULL "
        f"RETURNING {_COLUMNS}",
        (actor.name, name),
    ).fetchone()
    if row is None:
        raise NotFound(f"no live API token named {name!r}")
    audit.record(conn, actor=actor.name, area="api", action="token.revoke", target=name, outcome="ok",
                 detail={"key_id": row["key_id"]})
    return _row(row)


def authenticate(conn: psycopg.Connection, presented: str, *, now: datetime | None = None) -> Principal | None:
    """The principal of a valid, live token; `None` for anything else (malformed, unknown, wrong, revoked, expired)."""
    match = _TOKEN.fullmatch(presented)
    if not match:
        return None
    now = now or datetime.now(UTC)
    row = conn.execute(
        f"SELECT secret_hash, {_COLUMNS} FROM api_tokens WHERE key_id = %s", (match["key_id"],)
    ).fetchone()
    expected = row.pop("secret_hash") if row else _digest(secrets.token_urlsafe(32))
    if not hmac.compare_digest(bytes(expected), _digest(match["secret"])) or row is None:
        return None
    token = _row(row)
    if not token.active(now):
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        conn.execute("UPDATE api_tokens SET last_used_at = %s WHERE key_id = %s", (now, token.key_id))
    return token.principal
