"""The publish-attempt log written by the callbacks: browse it, chart it, prune it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from backend import audit
from backend.identity.principal import Principal, Role, require_role


@dataclass(frozen=True)
class Attempt:
    id: int
    at: datetime
    call: str
    addr: str
    app: str
    stream: str
    key_id: str | None
    outcome: str
    reason: str


@dataclass(frozen=True)
class AttemptCount:
    bucket: datetime
    outcome: str
    count: int


def list_attempts(
    conn: psycopg.Connection,
    actor: Principal,
    *,
    key_id: str | None = None,
    addr: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    limit: int = 200,
) -> list[Attempt]:
    """Newest first, optionally filtered by key, address, outcome (`allow`, `deny`, `error`) and time."""
    require_role(actor, Role.viewer, "read publish attempts")
    rows = conn.execute(
        """SELECT id, at, call, addr, app, stream, key_id, outcome, reason FROM stream_auth_attempts
           WHERE (%(key_id)s::text IS NULL OR key_id = %(key_id)s)
             AND (%(addr)s::text IS NULL OR addr = %(addr)s)
             AND (%(outcome)s::text IS NULL OR outcome = %(outcome)s)
             AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)
           ORDER BY id DESC LIMIT %(limit)s""",
        {"key_id": key_id, "addr": addr, "outcome": outcome, "since": since, "limit": max(1, min(limit, 10_000))},
    ).fetchall()
    return [Attempt(**r) for r in rows]


def attempt_counts(conn: psycopg.Connection, actor: Principal, *, since: datetime,
                   bucket: timedelta = timedelta(minutes=1)) -> list[AttemptCount]:
    """Publish attempts per time bucket and outcome, for the Streams page's chart."""
    require_role(actor, Role.viewer, "read publish attempts")
    rows = conn.execute(
        """SELECT date_bin(%(bucket)s, at, '2000-01-01') AS bucket, outcome, count(*) AS count
           FROM stream_auth_attempts WHERE at >= %(since)s AND call = 'publish'
           GROUP BY 1, 2 ORDER BY 1, 2""",
        {"bucket": bucket, "since": since},
    ).fetchall()
    return [AttemptCount(**r) for r in rows]


def prune_attempts(conn: psycopg.Connection, actor: Principal, older_than: timedelta) -> int:
    """Delete attempts older than `older_than`; returns how many went."""
    require_role(actor, Role.admin, "prune publish attempts")
    deleted = conn.execute("DELETE FROM stream_auth_attempts WHERE at < now() - %s", (older_than,)).rowcount
    audit.record(conn, actor=actor.name, area="streams", action="attempts.prune", outcome="ok",
                 detail={"older_than_s": older_than.total_seconds(), "deleted": deleted})
    return deleted
