"""What the console and the CLI call for streams: keys (create, list, revoke, rotate), live streams (list, kick),
publish attempts and lockouts. The service checks the role, fetches the stream-key pepper, opens and closes its own
connection and audits; callers only pass the acting principal.

Revoking and rotating commit first and kick second, so a publisher that reconnects at once is already refused.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from backend import audit
from backend.config import Settings, get_settings
from backend.db.connection import query_connection
from backend.errors import InvalidInput, NotFound, Unavailable
from backend.identity.principal import Principal, Role, require_role
from backend.streams import attempts, keys, live, lockout, nginx, schedules
from backend.streams.attempts import Attempt, AttemptCount
from backend.streams.keys import IssuedKey, StreamKey
from backend.streams.live import LiveStream, Reconciliation
from backend.streams.lockout import FailureState
from backend.streams.pepper import key_pepper
from backend.streams.schedules import Schedule
from backend.streams.schedules import parse_when as parse_when  # the schedule form's time grammar, for pages

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Revoked:
    """A revoked key and the live streams whose publishers were kicked off it."""

    key: StreamKey
    kicked: list[str]


@dataclass(frozen=True)
class Rotated:
    """The replacement key (its secret shown once) and the live streams kicked off the old one."""

    issued: IssuedKey
    kicked: list[str]


# -- keys --------------------------------------------------------------------------------------------------------


def create_key(
    principal: Principal,
    stream: str,
    *,
    app: str = "live",
    expires_in: timedelta | None = None,
    allowed_cidrs: Sequence[str] = (),
    owner: str | None = None,
    labels: dict[str, str] | None = None,
    settings: Settings | None = None,
) -> IssuedKey:
    """Issue a key for publishing `app/stream` (operator+); its secret is shown once and never stored."""
    settings = settings or get_settings()
    require_role(principal, Role.operator, "create stream keys")
    with query_connection(settings) as conn:
        return keys.create_key(conn, principal, key_pepper(settings), stream, app=app, expires_in=expires_in,
                               allowed_cidrs=allowed_cidrs, owner=owner, labels=labels)


def list_keys(principal: Principal, *, include_inactive: bool = False,
              settings: Settings | None = None) -> list[StreamKey]:
    """Keys newest first (metadata only); revoked and expired ones only when asked."""
    require_role(principal, Role.viewer, "list stream keys")
    with query_connection(settings) as conn:
        return keys.list_keys(conn, principal, include_inactive=include_inactive)


def revoke_key(principal: Principal, key_id: str, *, settings: Settings | None = None) -> Revoked:
    """Revoke a key (operator+), commit, then kick its live publishers."""
    settings = settings or get_settings()
    require_role(principal, Role.operator, "revoke stream keys")
    with query_connection(settings) as conn:
        revoked = keys.revoke_key(conn, principal, key_id)
        conn.commit()
        return Revoked(revoked, _kick_key_publishers(conn, key_id, settings))


def rotate_key(principal: Principal, key_id: str, *, settings: Settings | None = None) -> Rotated:
    """Issue a replacement with the same stream and limits, revoke the old key (operator+), commit, then kick
    publishers still on the old key."""
    settings = settings or get_settings()
    require_role(principal, Role.operator, "rotate stream keys")
    with query_connection(settings) as conn:
        issued = keys.rotate_key(conn, principal, key_pepper(settings), key_id)
        conn.commit()
        return Rotated(issued, _kick_key_publishers(conn, key_id, settings))


def _kick_key_publishers(conn: psycopg.Connection, key_id: str, settings: Settings) -> list[str]:
    """Drop every live publisher using `key_id`; nginx being unreachable is logged, not raised (on_update still
    refuses the key within `notify_update_timeout`)."""
    rows = conn.execute("SELECT app, stream FROM live_streams WHERE key_id = %s", (key_id,)).fetchall()
    if not rows or not settings.streams_nginx_control_url:
        return []
    kicked = []
    for row in rows:
        try:
            if nginx.drop_publisher(settings.streams_nginx_control_url, row["app"], row["stream"]):
                kicked.append(f"{row['app']}/{row['stream']}")
        except Unavailable as exc:
            log.warning("could not kick %s/%s: %s", row["app"], row["stream"], exc)
    return kicked


# -- live streams ------------------------------------------------------------------------------------------------


def list_live(principal: Principal, *, settings: Settings | None = None) -> list[LiveStream]:
    """The live registry as it stands, newest first (`live_streams` refreshes it from nginx first)."""
    require_role(principal, Role.viewer, "list live streams")
    with query_connection(settings) as conn:
        return live.list_live(conn, principal)


def live_streams(principal: Principal, *, settings: Settings | None = None) -> list[LiveStream]:
    """Reconcile with nginx's `/stat` when STREAMS_NGINX_STAT_URL is set, then list."""
    settings = settings or get_settings()
    require_role(principal, Role.viewer, "list live streams")
    with query_connection(settings) as conn:
        if settings.streams_nginx_stat_url:
            live.refresh(conn, settings)
        return live.list_live(conn, principal)


def reconcile(principal: Principal, *, settings: Settings | None = None) -> Reconciliation:
    """Bring the registry in line with nginx's `/stat` (stats in, ghosts out); needs STREAMS_NGINX_STAT_URL."""
    settings = settings or get_settings()
    require_role(principal, Role.viewer, "reconcile live streams")
    with query_connection(settings) as conn:
        return live.refresh(conn, settings)


def kick(principal: Principal, stream: str, *, app: str = "live", settings: Settings | None = None) -> int:
    """Drop the publisher of `app/stream` now (operator+; its key stays valid: revoke the key to keep it out)."""
    settings = settings or get_settings()
    require_role(principal, Role.operator, "kick live streams")
    if not settings.streams_nginx_control_url:
        raise InvalidInput("STREAMS_NGINX_CONTROL_URL is not set: point it at nginx's rtmp_control location")
    dropped = nginx.drop_publisher(settings.streams_nginx_control_url, app, stream)
    if not dropped:
        raise NotFound(f"no publisher is live on {app}/{stream}")
    with query_connection(settings) as conn:
        audit.record(conn, actor=principal.name, area="streams", action="stream.kick", target=f"{app}/{stream}",
                     outcome="ok", detail={"dropped": dropped})
    return dropped


# -- publish attempts and lockouts -------------------------------------------------------------------------------


def list_attempts(
    principal: Principal,
    *,
    key_id: str | None = None,
    addr: str | None = None,
    outcome: str | None = None,
    since: datetime | None = None,
    limit: int = 200,
    settings: Settings | None = None,
) -> list[Attempt]:
    """Publish attempts newest first, optionally filtered by key, address, outcome and time."""
    require_role(principal, Role.viewer, "read publish attempts")
    with query_connection(settings) as conn:
        return attempts.list_attempts(conn, principal, key_id=key_id, addr=addr, outcome=outcome, since=since,
                                      limit=limit)


def attempt_counts(principal: Principal, *, since: datetime, bucket: timedelta = timedelta(minutes=1),
                   settings: Settings | None = None) -> list[AttemptCount]:
    """Publish attempts per time bucket and outcome, for the Streams page's chart."""
    require_role(principal, Role.viewer, "read publish attempts")
    with query_connection(settings) as conn:
        return attempts.attempt_counts(conn, principal, since=since, bucket=bucket)


def prune_attempts(principal: Principal, older_than: timedelta, *, settings: Settings | None = None) -> int:
    """Delete publish attempts older than `older_than` (admin); returns how many went."""
    require_role(principal, Role.admin, "prune publish attempts")
    with query_connection(settings) as conn:
        return attempts.prune_attempts(conn, principal, older_than)


def list_failures(principal: Principal, *, locked_only: bool = False,
                  settings: Settings | None = None) -> list[FailureState]:
    """Addresses with recent failed publish attempts, locked ones first."""
    require_role(principal, Role.viewer, "list publish lockouts")
    with query_connection(settings) as conn:
        return lockout.list_failures(conn, principal, locked_only=locked_only)


def clear_lockout(principal: Principal, addr: str | None = None, *, settings: Settings | None = None) -> int:
    """Forget failures of one address, or of all when `addr` is None (operator+); returns how many were cleared."""
    require_role(principal, Role.operator, "clear publish lockouts")
    with query_connection(settings) as conn:
        return lockout.clear(conn, principal, addr)


# -- scheduled streams -------------------------------------------------------------------------------------------


def schedule_stream(principal: Principal, name: str, key_id: str, vm: str, starts_at: datetime, ends_at: datetime,
                    *, grace: timedelta = timedelta(0), zone: str | None = None,
                    settings: Settings | None = None) -> Schedule:
    """Bind a key to a window on a VM (operator+, audited): the key then publishes only inside its windows ± grace,
    the VM is started ahead of the start (`vm start-scheduled`) and auto-shutdown holds it during the window."""
    require_role(principal, Role.operator, "schedule streams")
    with query_connection(settings) as conn:
        return schedules.create(conn, principal, name, key_id, vm, starts_at, ends_at, grace=grace, zone=zone)


def list_schedules(principal: Principal, *, include_past: bool = False, vm: str | None = None,
                   settings: Settings | None = None) -> list[Schedule]:
    """Scheduled streams by start: upcoming and open ones, or all with `include_past`."""
    require_role(principal, Role.viewer, "list scheduled streams")
    with query_connection(settings) as conn:
        return schedules.list_schedules(conn, principal, include_past=include_past, vm=vm)


def cancel_schedule(principal: Principal, schedule_id: int, *, settings: Settings | None = None) -> Schedule:
    """Cancel a scheduled stream (operator+, audited)."""
    require_role(principal, Role.operator, "cancel scheduled streams")
    with query_connection(settings) as conn:
        return schedules.cancel(conn, principal, schedule_id)
