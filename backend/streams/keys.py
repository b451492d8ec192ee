"""Stream keys: create (shown once), list, revoke, rotate. Only an HMAC of each key is stored.

A key allows publishing one stream name in one application, optionally only from some networks and until an
expiry. Operators and admins manage keys; viewers may list their metadata. Every change is audited, never with
the key itself.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

from backend import audit
from backend.errors import InvalidInput, NotFound
from backend.identity.principal import Principal, Role, require_role
from backend.streams.pepper import hash_key

KEY_PREFIX = "sk_"
SHOWN_PREFIX_LENGTH = 8
# Checked with `fullmatch`: `match` with `^…$` lets a trailing "\n" through, and names reach a 302 `Location` header.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_LABEL = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
KeyState = Literal["active", "expired", "revoked"]


@dataclass(frozen=True)
class StreamKey:
    """A key's metadata; the key itself is not here (it exists only in the `IssuedKey` shown at creation)."""

    id: str
    stream: str
    app: str
    key_prefix: str
    allowed_cidrs: tuple[str, ...]
    owner: str | None
    labels: dict[str, str]
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None
    replaced_by: str | None
    created_at: datetime
    created_by: str
    last_used_at: datetime | None

    def state(self, now: datetime | None = None) -> KeyState:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC)):
            return "expired"
        return "active"


@dataclass(frozen=True)
class IssuedKey:
    """A newly created key: show `secret` to the user once, then forget it."""

    key: StreamKey
    secret: str = field(repr=False)


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    """A key's labels: lower-case identifiers as names, values up to 128 characters."""
    for name, value in labels.items():
        if not _LABEL.fullmatch(name) or len(value) > 128:
            raise InvalidInput(f"invalid label {name!r}: use name=value with a lower-case name and a value of up "
                               "to 128 characters")
    return dict(labels)


def valid_name(value: str) -> bool:
    """A stream or application name: what nginx paths, our URLs and a `Location` header can carry as it is."""
    return _NAME.fullmatch(value) is not None


def _check_name(kind: str, value: str) -> str:
    if not valid_name(value):
        raise InvalidInput(f"invalid {kind} {value!r}: use 1-64 letters, digits, '_' or '-', starting with a "
                           "letter or digit")
    return value


def _check_cidrs(values: Sequence[str]) -> tuple[str, ...]:
    networks = []
    for value in values:
        try:
            networks.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            raise InvalidInput(f"invalid --allow-ip {value!r}: use an address or a CIDR like 203.0.113.0/24") from None
    return tuple(dict.fromkeys(networks))


_COLUMNS = ("id, stream, app, key_prefix, allowed_cidrs::text[] AS allowed_cidrs, owner, labels, expires_at, "
            "revoked_at, revoked_by, replaced_by, created_at, created_by, last_used_at")


def _row_to_key(row: dict[str, Any]) -> StreamKey:
    return StreamKey(**{**row, "allowed_cidrs": tuple(row["allowed_cidrs"])})


def new_secret() -> str:
    """256 bits from the OS CSPRNG, URL-safe, recognisable by its `sk_` prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _new_id() -> str:
    return "key_" + secrets.token_hex(5)


def create_key(
    conn: psycopg.Connection,
    actor: Principal,
    pepper: bytes,
    stream: str,
    *,
    app: str = "live",
    expires_in: timedelta | None = None,
    allowed_cidrs: Sequence[str] = (),
    owner: str | None = None,
    labels: dict[str, str] | None = None,
) -> IssuedKey:
    """Issue a key for publishing `app/stream`; the returned secret is shown once and never stored."""
    require_role(actor, Role.operator, "create stream keys")
    _check_name("stream name", stream)
    _check_name("application", app)
    cidrs = _check_cidrs(allowed_cidrs)
    if owner is not None and not 0 < len(owner) <= 128:
        raise InvalidInput("invalid owner: use 1-128 characters")
    expires_at = datetime.now(UTC) + expires_in if expires_in is not None else None
    return _issue(conn, actor, pepper, stream, app, expires_at, cidrs, owner, check_labels(labels or {}))


def _issue(conn: psycopg.Connection, actor: Principal, pepper: bytes, stream: str, app: str,
           expires_at: datetime | None, cidrs: tuple[str, ...], owner: str | None, labels: dict[str, str]) -> IssuedKey:
    secret = new_secret()
    row = conn.execute(
        f"""INSERT INTO stream_keys (id, stream, app, key_hash, key_prefix, allowed_cidrs, owner, labels,
                                     expires_at, created_by)
            VALUES (%s, %s, %s, %s, %s, %s::cidr[], %s, %s, %s, %s) RETURNING {_COLUMNS}""",
        (_new_id(), stream, app, hash_key(pepper, secret), secret[:SHOWN_PREFIX_LENGTH], list(cidrs), owner,
         Jsonb(labels), expires_at, actor.name),
    ).fetchone()
    key = _row_to_key(row)
    audit.record(conn, actor=actor.name, area="streams", action="key.create", target=key.id, outcome="ok",
                 detail={"stream": stream, "app": app, "expires_at": expires_at.isoformat() if expires_at else None,
                         "allowed_cidrs": list(cidrs)})
    return IssuedKey(key, secret)


def list_keys(conn: psycopg.Connection, actor: Principal, *, include_inactive: bool = False) -> list[StreamKey]:
    """Keys newest first; revoked and expired ones only when asked."""
    require_role(actor, Role.viewer, "list stream keys")
    where = "" if include_inactive else "WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
    rows = conn.execute(f"SELECT {_COLUMNS} FROM stream_keys {where} ORDER BY created_at DESC, id").fetchall()
    return [_row_to_key(r) for r in rows]


def get_key(conn: psycopg.Connection, actor: Principal, key_id: str) -> StreamKey:
    require_role(actor, Role.viewer, "read stream keys")
    row = conn.execute(f"SELECT {_COLUMNS} FROM stream_keys WHERE id = %s", (key_id,)).fetchone()
    if row is None:
        raise NotFound(f"no stream key {key_id!r}")
    return _row_to_key(row)


def revoke_key(conn: psycopg.Connection, actor: Principal, key_id: str, *, replaced_by: str | None = None) -> StreamKey:
    """Mark a key revoked: later publishes and the next `on_update` of a live publisher are refused.

    `service.revoke_key` kicks the live publisher after committing, so a reconnect cannot slip in
    before the revocation is visible.
    """
    require_role(actor, Role.operator, "revoke stream keys")
    row = conn.execute(
        f"""UPDATE stream_keys SET revoked_at = now(), revoked_by = %s, replaced_by = %s
            WHERE id = %s AND revoked_at IS NULL RETURNING {_COLUMNS}""",
        (actor.name, replaced_by, key_id),
    ).fetchone()
    if row is None:
        get_key(conn, actor, key_id)
        raise InvalidInput(f"stream key {key_id!r} is already revoked")
    action = "key.rotate" if replaced_by else "key.revoke"
    audit.record(conn, actor=actor.name, area="streams", action=action, target=key_id, outcome="ok",
                 detail={"stream": row["stream"], "app": row["app"], "replaced_by": replaced_by})
    return _row_to_key(row)


def rotate_key(conn: psycopg.Connection, actor: Principal, pepper: bytes, key_id: str) -> IssuedKey:
    """Issue a new key with the same stream, app, networks, owner and labels, and revoke the old one.

    The old key's expiry carries over to the new key.
    """
    require_role(actor, Role.operator, "rotate stream keys")
    old = get_key(conn, actor, key_id)
    if old.state() != "active":
        raise InvalidInput(f"stream key {key_id!r} is {old.state()}: create a new key instead")
    issued = _issue(conn, actor, pepper, old.stream, old.app, old.expires_at, old.allowed_cidrs, old.owner,
                    old.labels)
    revoke_key(conn, actor, key_id, replaced_by=issued.key.id)
    return issued
