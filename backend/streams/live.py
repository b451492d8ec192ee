"""The live-stream registry: fed by the callbacks and reconciled with nginx's `/stat` (kicking: `service.py`).

Callbacks can be missed (nginx restarts, the API is down when a stream ends), so the registry is reconciled with
what nginx reports: a registered stream nginx no longer shows is a ghost and goes; stats come from `/stat`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from backend.config import Settings, get_settings
from backend.errors import InvalidInput
from backend.identity.principal import Principal, Role, require_role
from backend.streams import nginx

log = logging.getLogger(__name__)

# A stream allowed a moment ago may not be in /stat yet: reconciliation leaves young entries alone.
RECONCILE_GRACE = timedelta(seconds=15)


@dataclass(frozen=True)
class LiveStream:
    app: str
    stream: str
    key_id: str | None
    owner: str | None
    addr: str
    client_id: str
    started_at: datetime
    last_update_at: datetime
    stats: dict[str, Any]
    stats_at: datetime | None

    @property
    def bitrate_kbps(self) -> float | None:
        return self.stats.get("bw_in_kbps")


@dataclass(frozen=True)
class Reconciliation:
    updated: list[str]
    removed: list[str]
    unregistered: list[str]


def list_live(conn: psycopg.Connection, actor: Principal) -> list[LiveStream]:
    """The registry as it stands, newest first (`service.live_streams` refreshes it from nginx first)."""
    require_role(actor, Role.viewer, "list live streams")
    rows = conn.execute(
        """SELECT l.app, l.stream, l.key_id, k.owner, l.addr, l.client_id, l.started_at, l.last_update_at, l.stats,
                  l.stats_at
           FROM live_streams l LEFT JOIN stream_keys k ON k.id = l.key_id ORDER BY l.started_at DESC"""
    ).fetchall()
    return [LiveStream(**r) for r in rows]


def reconcile(conn: psycopg.Connection, reported: list[nginx.StatStream]) -> Reconciliation:
    """Bring the registry in line with nginx's report: update stats, remove ghosts, name unregistered streams."""
    by_name = {(s.app, s.name): s for s in reported if s.publishing}
    registered = conn.execute("SELECT app, stream, started_at < now() - %s AS settled FROM live_streams",
                              (RECONCILE_GRACE,)).fetchall()
    updated, removed = [], []
    for row in registered:
        ident = (row["app"], row["stream"])
        stat = by_name.pop(ident, None)
        label = "/".join(ident)
        if stat is not None:
            conn.execute("UPDATE live_streams SET stats = %s, stats_at = now() WHERE app = %s AND stream = %s",
                         (Jsonb(asdict(stat)), *ident))
            updated.append(label)
        elif row["settled"]:
            conn.execute("DELETE FROM live_streams WHERE app = %s AND stream = %s", ident)
            removed.append(label)
    if removed:
        log.info("removed %d ghost stream(s) nginx no longer reports: %s", len(removed), ", ".join(removed))
    unregistered = ["/".join(ident) for ident in by_name]
    if unregistered:
        log.warning("nginx reports streams the registry does not know: %s", ", ".join(unregistered))
    return Reconciliation(updated, removed, unregistered)


def refresh(conn: psycopg.Connection, settings: Settings | None = None) -> Reconciliation:
    """Fetch `/stat` from `STREAMS_NGINX_STAT_URL` and reconcile."""
    settings = settings or get_settings()
    if not settings.streams_nginx_stat_url:
        raise InvalidInput("STREAMS_NGINX_STAT_URL is not set: point it at nginx's rtmp_stat location")
    return reconcile(conn, nginx.fetch_stat(settings.streams_nginx_stat_url))
