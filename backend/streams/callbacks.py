"""Decisions for nginx-rtmp's callbacks: may this client publish (or keep publishing, or play) this stream?

nginx sends the stream name as the client gave it and every query parameter of the publish URL as a form field.
A key comes from the `key` field (`rtmp://host/live/cam1?key=K`) or, OBS style, is the stream name itself
(`rtmp://host/live/K`); the latter is answered with a redirect to the public name so the key never shows in
`/stat`, logs or HLS paths. nginx keeps sending the original name in `on_update` and `on_publish_done`, so those
map it back the same way: every callback re-derives the key from what nginx sends, with no session state.

The publish path is built for speed: the pepper is cached, one query reads the key and the address's failure
state, and one statement (one commit) writes the attempt with the registry or the failure counter. By default those
commits do not wait for the WAL flush (`STREAMS_CALLBACK_SYNCHRONOUS_COMMIT`): on a slow disk the flush, not the
CPU, bounds the callback rate.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from backend.backoff import FailureState, after_failure
from backend.config import Settings
from backend.db.connection import open_async_pool
from backend.errors import ConfigError
from backend.streams.keys import KEY_PREFIX
from backend.streams.lockout import LockoutPolicy
from backend.streams.pepper import callback_token, hash_key, key_pepper
from backend.streams.schedules import IN_SCHEDULE_SQL

log = logging.getLogger(__name__)

FIELD_LIMIT = 256
REDACTED = "[redacted]"
Outcome = Literal["allow", "deny", "error"]


@dataclass(frozen=True)
class CallbackRequest:
    """The fields of an nginx-rtmp callback that matter here (the rest are ignored)."""

    call: str
    app: str
    name: str
    addr: str
    client_id: str
    key: str | None

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> CallbackRequest:
        def text(field: str) -> str:
            return form.get(field, "")[:FIELD_LIMIT]

        key = form.get("key")
        return cls(text("call"), text("app"), text("name"), text("addr"), text("clientid"),
                   key[:FIELD_LIMIT] if key is not None else None)

    @property
    def presented_key(self) -> str:
        """The `key` field, or the stream name itself (OBS style)."""
        return self.key if self.key is not None else self.name

    def audit_name(self, key: KeyRecord | None) -> str:
        """The public name when a key matched; a name that was presented as a key is never recorded."""
        if key is not None:
            return key.stream
        return self.name if self.key is not None else REDACTED


@dataclass(frozen=True)
class KeyRecord:
    id: str
    stream: str
    app: str
    key_hash: bytes
    allowed_cidrs: tuple[str, ...]
    expires_at: datetime | None
    revoked_at: datetime | None
    in_schedule: bool | None = None
    """None: the key has no schedule; else whether now is inside one of its windows ± grace."""


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str
    key: KeyRecord | None = None
    rename_to: str | None = None

    @property
    def allowed(self) -> bool:
        return self.outcome == "allow"

    @property
    def counts_as_failure(self) -> bool:
        """Refusals that look like guessing count towards a lockout; refusals because of a lockout, or of a good
        key used outside its schedule, do not."""
        return self.outcome == "deny" and self.reason not in ("address locked out", "outside schedule")


def check_key(req: CallbackRequest, key: KeyRecord | None, presented_hash: bytes, now: datetime) -> Decision:
    """Whether `key` (looked up by `presented_hash`) lets this client publish `req.app/req.name`."""
    if key is None or not hmac.compare_digest(key.key_hash, presented_hash):
        return Decision("deny", "missing or unknown key")
    if key.revoked_at is not None:
        return Decision("deny", "key revoked", key)
    if key.expires_at is not None and key.expires_at <= now:
        return Decision("deny", "key expired", key)
    if key.in_schedule is False:
        return Decision("deny", "outside schedule", key)
    if key.app != req.app:
        return Decision("deny", "wrong application for key", key)
    if req.key is not None and req.name != key.stream:
        return Decision("deny", "stream name not allowed for key", key)
    if key.allowed_cidrs and not _address_allowed(req.addr, key.allowed_cidrs):
        return Decision("deny", "address not allowed for key", key)
    if req.key is None and req.name != key.stream:
        return Decision("allow", "ok (renamed)", key, rename_to=key.stream)
    return Decision("allow", "ok", key)


def _address_allowed(addr: str, cidrs: tuple[str, ...]) -> bool:
    address = ipaddress.ip_address(addr)
    return any(address in ipaddress.ip_network(cidr) for cidr in cidrs)


def _valid_address(addr: str) -> bool:
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        return False
    return True


_READ_PUBLISH = f"""
SELECT k.id, k.stream, k.app, k.key_hash, k.allowed_cidrs::text[] AS allowed_cidrs, k.expires_at, k.revoked_at,
       {IN_SCHEDULE_SQL} AS in_schedule, f.failures, f.first_failed_at, f.last_failed_at, f.locked_until
FROM (SELECT) AS one
LEFT JOIN stream_keys k ON k.key_hash = %(hash)s
LEFT JOIN stream_auth_failures f ON f.addr = %(addr)s::inet
"""
_READ_KEY = f"""
SELECT k.id, k.stream, k.app, k.key_hash, k.allowed_cidrs::text[] AS allowed_cidrs, k.expires_at, k.revoked_at,
       {IN_SCHEDULE_SQL} AS in_schedule
FROM stream_keys k WHERE k.key_hash = %(hash)s
"""
_RECORD_ATTEMPT = """
INSERT INTO stream_auth_attempts (call, addr, app, stream, key_id, outcome, reason)
VALUES (%(call)s, %(addr)s, %(app)s, %(stream)s, %(key_id)s, %(outcome)s, %(reason)s)
"""
# Allowed: record the attempt, mark the key used, forget the address's failures, (re)register the stream.
_ALLOWED = """
WITH attempt AS (
    INSERT INTO stream_auth_attempts (call, addr, app, stream, key_id, outcome, reason)
    VALUES (%(call)s, %(addr)s, %(app)s, %(stream)s, %(key_id)s, %(outcome)s, %(reason)s)
), used AS (
    UPDATE stream_keys SET last_used_at = now() WHERE id = %(key_id)s
), forgiven AS (
    DELETE FROM stream_auth_failures WHERE addr = %(addr)s::inet
)
INSERT INTO live_streams (app, stream, key_id, addr, client_id, host)
VALUES (%(app)s, %(stream)s, %(key_id)s, %(addr)s, %(client_id)s, %(host)s)
ON CONFLICT (app, stream) DO UPDATE SET key_id = EXCLUDED.key_id, addr = EXCLUDED.addr,
    client_id = EXCLUDED.client_id, host = EXCLUDED.host, started_at = now(), last_update_at = now(),
    stats = '{}'::jsonb, stats_at = NULL
"""
# Refused in a way that counts towards a lockout: record the attempt and the address's new failure state.
_REFUSED = """
WITH attempt AS (
    INSERT INTO stream_auth_attempts (call, addr, app, stream, key_id, outcome, reason)
    VALUES (%(call)s, %(addr)s, %(app)s, %(stream)s, %(key_id)s, %(outcome)s, %(reason)s)
)
INSERT INTO stream_auth_failures (addr, failures, first_failed_at, last_failed_at, locked_until)
VALUES (%(addr)s::inet, %(failures)s, %(first_failed_at)s, %(last_failed_at)s, %(locked_until)s)
ON CONFLICT (addr) DO UPDATE SET failures = EXCLUDED.failures, first_failed_at = EXCLUDED.first_failed_at,
    last_failed_at = EXCLUDED.last_failed_at, locked_until = EXCLUDED.locked_until
"""
_TOUCH_LIVE = """
INSERT INTO live_streams (app, stream, key_id, addr, client_id, host)
VALUES (%(app)s, %(stream)s, %(key_id)s, %(addr)s, %(client_id)s, %(host)s)
ON CONFLICT (app, stream) DO UPDATE SET last_update_at = now()
"""
_PUBLISH_DONE = """
WITH k AS (SELECT id, stream FROM stream_keys WHERE key_hash = %(hash)s),
gone AS (
    DELETE FROM live_streams
    WHERE app = %(app)s AND client_id = %(client_id)s AND stream = coalesce((SELECT stream FROM k), %(name)s)
    RETURNING stream
)
INSERT INTO stream_auth_attempts (call, addr, app, stream, key_id, outcome, reason)
SELECT 'publish_done', %(addr)s, %(app)s, coalesce((SELECT stream FROM k), %(name)s), (SELECT id FROM k), 'allow',
       CASE WHEN EXISTS (SELECT 1 FROM gone) THEN 'ended' ELSE 'ended (was not registered)' END
"""
_IS_LIVE = "SELECT EXISTS (SELECT 1 FROM live_streams WHERE app = %(app)s AND stream = %(name)s) AS live"


def _key_record(row: Mapping[str, Any]) -> KeyRecord | None:
    if row["id"] is None:
        return None
    return KeyRecord(row["id"], row["stream"], row["app"], bytes(row["key_hash"]), tuple(row["allowed_cidrs"]),
                     row["expires_at"], row["revoked_at"], row["in_schedule"])


class CallbackGate:
    """The callbacks' state for one API process: settings, the cached pepper and callback token, a connection pool."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.policy = LockoutPolicy.from_settings(settings)
        try:
            self.callers = tuple(ipaddress.ip_network(n, strict=False) for n in settings.streams_callback_allowed_nets)
        except ValueError as exc:
            raise ConfigError(f"invalid STREAMS_CALLBACK_ALLOWED_NETS: {exc}") from None
        self._pepper: bytes | None = None
        self._token: bytes | None = None
        self._pool: AsyncConnectionPool | None = None
        self._lock = asyncio.Lock()

    def caller_allowed(self, peer: str) -> bool:
        """Only nginx may call: a direct caller could forge `addr` to lock someone out or dodge an allow-list."""
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in net for net in self.callers)

    async def token_valid(self, presented: str | None) -> bool:
        """Whether the callback URL carried our callback token (compared in constant time). An address is not proof:
        every container, VM or VPN client on an allowed network shares it."""
        if self._token is None:
            async with self._lock:
                if self._token is None:
                    self._token = (await asyncio.to_thread(callback_token, self.settings)).encode()
        return presented is not None and hmac.compare_digest(presented.encode("utf-8", "surrogateescape"),
                                                             self._token)

    async def _ready(self) -> tuple[bytes, AsyncConnectionPool]:
        if self._pepper is None or self._pool is None:
            async with self._lock:
                if self._pepper is None:
                    self._pepper = await asyncio.to_thread(key_pepper, self.settings)
                if self._pool is None:
                    self._pool = await open_async_pool(self.settings, name="rtmp-callbacks",
                                                       max_size=self.settings.streams_db_pool_size,
                                                       configure=self._configure)
        return self._pepper, self._pool

    async def _configure(self, conn: AsyncConnection) -> None:
        durable = "on" if self.settings.streams_callback_synchronous_commit else "off"
        await conn.execute(f"SET synchronous_commit = {durable}")

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def publish(self, req: CallbackRequest) -> Decision:
        """`on_publish`: check the address's lockout and the key; record the attempt; register or count a failure."""
        pepper, pool = await self._ready()
        now = datetime.now(UTC)
        async with pool.connection() as conn:
            if not _valid_address(req.addr):
                decision, failures = Decision("deny", "invalid client address"), None
            else:
                presented = hash_key(pepper, req.presented_key)
                row = await (await conn.execute(_READ_PUBLISH, {"hash": presented, "addr": req.addr, "now": now})
                             ).fetchone()
                failures = FailureState(req.addr, row["failures"], row["first_failed_at"], row["last_failed_at"],
                                        row["locked_until"]) if row["failures"] is not None else None
                if failures is not None and failures.locked(now):
                    decision = Decision("deny", "address locked out")
                else:
                    decision = check_key(req, _key_record(row), presented, now)
            params = self._attempt(req, decision)
            if decision.allowed:
                await conn.execute(_ALLOWED, {**params, "host": self.settings.streams_host})
            elif decision.counts_as_failure and _valid_address(req.addr):
                state = after_failure(failures, req.addr, now, self.policy)
                await conn.execute(_REFUSED, {**params, **vars(state)})
            else:
                await conn.execute(_RECORD_ATTEMPT, params)
        return decision

    async def update(self, req: CallbackRequest) -> Decision:
        """`on_update`: the key must still be valid, or nginx drops the publisher. Refusals are recorded."""
        pepper, pool = await self._ready()
        now = datetime.now(UTC)
        async with pool.connection() as conn:
            presented = hash_key(pepper, req.presented_key)
            row = await (await conn.execute(_READ_KEY, {"hash": presented, "now": now})).fetchone()
            key = _key_record(row) if row else None
            decision = (check_key(req, key, presented, now) if _valid_address(req.addr)
                        else Decision("deny", "invalid client address"))
            params = self._attempt(req, decision)
            await conn.execute(_TOUCH_LIVE if decision.allowed else _RECORD_ATTEMPT,
                               {**params, "host": self.settings.streams_host})
        return replace(decision, rename_to=None)  # the rename happened at publish; a 3xx here would drop it

    async def publish_done(self, req: CallbackRequest) -> None:
        """`on_publish_done`: drop the stream from the registry (this client's session only) and record it."""
        pepper, pool = await self._ready()
        async with pool.connection() as conn:
            await conn.execute(_PUBLISH_DONE, {
                "hash": hash_key(pepper, req.presented_key), "app": req.app, "client_id": req.client_id,
                "addr": req.addr, "name": req.audit_name(None)})

    async def play(self, req: CallbackRequest) -> Decision:
        """`on_play`: players may only attach to streams that are live now; refusals are recorded."""
        _, pool = await self._ready()
        async with pool.connection() as conn:
            row = await (await conn.execute(_IS_LIVE, {"app": req.app, "name": req.name})).fetchone()
            if row["live"]:
                return Decision("allow", "ok")
            decision = Decision("deny", "stream not live")
            shown = REDACTED if req.name.startswith(KEY_PREFIX) else req.name
            await conn.execute(_RECORD_ATTEMPT, {**self._attempt(req, decision), "stream": shown})
        return decision

    @staticmethod
    def _attempt(req: CallbackRequest, decision: Decision) -> dict[str, Any]:
        key = decision.key
        return {"call": req.call or "unknown", "addr": req.addr, "app": req.app, "stream": req.audit_name(key),
                "key_id": key.id if key else None, "outcome": decision.outcome, "reason": decision.reason,
                "client_id": req.client_id}
