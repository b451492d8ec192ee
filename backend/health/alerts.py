"""Alerts in PostgreSQL: one active alert per (GPU, rule), loaded, decided by `transitions.transition`, saved.

The lifecycle itself (open → acknowledged → resolved, flap suppression, reopen within a window, escalation, stale
data keeps alerts as they are) is the pure function in `backend/health/transitions.py`; this module only loads
alerts, saves what was decided and records each event with its reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from backend import audit
from backend.errors import Conflict, InvalidInput, NotFound
from backend.health.findings import SEVERITY_RANK, Finding, GpuHealth
from backend.health.transitions import AlertPolicy, AlertState, EventKind, Transition, transition
from backend.identity.principal import PermissionDenied, Principal, Role, require_role

ALERT_STATES: tuple[AlertState, ...] = ("open", "acknowledged", "resolved")


@dataclass(frozen=True)
class Alert:
    id: int
    gpu_uuid: str
    host: str
    gpu_index: int
    model: str | None
    rule: str
    severity: str
    state: AlertState
    title: str
    evidence: dict[str, Any]
    action: str
    since: datetime
    opened_at: datetime
    last_firing_at: datetime
    updated_at: datetime
    clear_count: int
    reopen_count: int
    resolved_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    ack_note: str | None


@dataclass(frozen=True)
class AlertEvent:
    """A change worth telling people about; recorded in `alert_events`, which the webhook delivers from."""

    kind: EventKind
    alert: Alert
    reason: str


@dataclass(frozen=True)
class AlertEventRecord:
    """One line of an alert's timeline, with the alert as it was then, why, and whether the webhook got it."""

    id: int
    alert_id: int
    kind: EventKind
    at: datetime
    actor: str
    reason: str
    alert: dict[str, Any]
    attempts: int
    delivered_at: datetime | None


_COLUMNS = ", ".join(Alert.__dataclass_fields__)


def alert_json(alert: Alert) -> dict[str, Any]:
    """The alert as JSON-ready values (timestamps in RFC 3339)."""
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(alert).items()}


def _alert(row: dict[str, Any] | None) -> Alert:
    assert row is not None
    return Alert(**row)


def reconcile(
    conn: psycopg.Connection, results: list[GpuHealth], now: datetime, policy: AlertPolicy
) -> list[AlertEvent]:
    """Open, update and resolve alerts so they match this evaluation's findings; returns what changed."""
    events: list[AlertEvent] = []
    with conn.transaction():
        active = {(a.gpu_uuid, a.rule): a for a in map(_alert, conn.execute(
            f"SELECT {_COLUMNS} FROM alerts WHERE state <> 'resolved' FOR UPDATE").fetchall())}
        recent = {(a.gpu_uuid, a.rule): a for a in map(_alert, conn.execute(
            f"""SELECT DISTINCT ON (gpu_uuid, rule) {_COLUMNS} FROM alerts
                WHERE state = 'resolved' AND resolved_at >= %s
                ORDER BY gpu_uuid, rule, resolved_at DESC""",
            (now - timedelta(seconds=policy.reopen_window_s),)).fetchall())}
        for health in results:
            for finding in health.findings:
                key = (health.gpu_uuid, finding.rule)
                current = active.pop(key, None) or recent.get(key)
                decided = transition(current, finding, now, policy)
                events += _save(conn, decided, current, now, health=health, finding=finding)
        evaluated = {h.gpu_uuid: h for h in results}
        for alert in active.values():
            health = evaluated.get(alert.gpu_uuid)
            if health is None:
                continue
            decided = transition(alert, None, now, policy, stale=health.status == "unknown")
            events += _save(conn, decided, alert, now)
        record_events(conn, events, now, "system")
    return events


def record_events(conn: psycopg.Connection, events: list[AlertEvent], at: datetime, actor: str) -> None:
    """Append to the alerts' timelines (and the webhook's outbox)."""
    if not events:
        return
    conn.execute(
        """INSERT INTO alert_events (alert_id, kind, at, actor, reason, alert)
           SELECT * FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::text[], %s::text[], %s::jsonb[])""",
        ([e.alert.id for e in events], [e.kind for e in events], [at] * len(events), [actor] * len(events),
         [e.reason for e in events], [Jsonb(alert_json(e.alert)) for e in events]),
    )


def history(conn: psycopg.Connection, alert_id: int) -> list[AlertEventRecord]:
    """An alert's timeline, oldest first."""
    get_alert(conn, alert_id)
    rows = conn.execute(
        """SELECT id, alert_id, kind, at, actor, reason, alert, attempts, delivered_at FROM alert_events
           WHERE alert_id = %s ORDER BY id""",
        (alert_id,),
    ).fetchall()
    return [AlertEventRecord(**r) for r in rows]


_FIRE = """severity = %(severity)s, title = %(title)s, evidence = %(evidence)s, action = %(action)s,
           last_firing_at = %(now)s, updated_at = %(now)s, clear_count = 0, state = %(state)s"""
_SAVE = {
    "open": f"""INSERT INTO alerts (gpu_uuid, host, gpu_index, model, rule, severity, state, title, evidence,
                                    action, since, opened_at, last_firing_at, updated_at)
                VALUES (%(gpu)s, %(host)s, %(index)s, %(model)s, %(rule)s, %(severity)s, %(state)s, %(title)s,
                        %(evidence)s, %(action)s, %(since)s, %(now)s, %(now)s, %(now)s)
                RETURNING {_COLUMNS}""",
    "fire": f"UPDATE alerts SET {_FIRE} WHERE id = %(id)s RETURNING {_COLUMNS}",
    "reopen": f"""UPDATE alerts SET {_FIRE}, reopen_count = reopen_count + 1, resolved_at = NULL,
                      acknowledged_at = NULL, acknowledged_by = NULL, ack_note = NULL
                  WHERE id = %(id)s RETURNING {_COLUMNS}""",
    "clear": f"""UPDATE alerts SET clear_count = %(clears)s, updated_at = %(now)s, state = %(state)s,
                     resolved_at = CASE WHEN %(state)s = 'resolved' THEN %(now)s ELSE resolved_at END
                 WHERE id = %(id)s RETURNING {_COLUMNS}""",
}


def _save(conn: psycopg.Connection, decided: Transition, alert: Alert | None, now: datetime, *,
          health: GpuHealth | None = None, finding: Finding | None = None) -> list[AlertEvent]:
    """Store one decision; returns its event, if it has one."""
    if decided.change == "none":
        return []
    params: dict[str, Any] = {"now": now, "state": decided.state, "clears": decided.clear_count,
                              "id": alert.id if alert else None}
    if finding is not None and health is not None:
        params |= {"severity": finding.severity, "title": finding.title, "evidence": Jsonb(finding.evidence),
                   "action": finding.action, "gpu": health.gpu_uuid, "host": health.host,
                   "index": health.gpu_index, "model": health.model, "rule": finding.rule, "since": finding.since}
    row = conn.execute(_SAVE[decided.change], params).fetchone()
    return [AlertEvent(decided.event, _alert(row), decided.reason)] if decided.event else []


def list_alerts(
    conn: psycopg.Connection,
    *,
    states: tuple[str, ...] | None = None,
    severity: str | None = None,
    gpu_uuid: str | None = None,
    host: str | None = None,
    rule: str | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[Alert]:
    """Newest first; `states` defaults to all three."""
    for state in states or ():
        if state not in ALERT_STATES:
            raise InvalidInput(f"state must be one of {', '.join(ALERT_STATES)}, not {state!r}")
    if severity is not None and severity not in SEVERITY_RANK:
        raise InvalidInput(f"severity must be warning or critical, not {severity!r}")
    if not 1 <= limit <= 1000 or offset < 0:
        raise InvalidInput("limit must be 1..1000 and offset ≥ 0")
    rows = conn.execute(
        f"""SELECT {_COLUMNS} FROM alerts
            WHERE (%(states)s::text[] IS NULL OR state = ANY(%(states)s))
              AND (%(severity)s::text IS NULL OR severity = %(severity)s)
              AND (%(gpu)s::text IS NULL OR gpu_uuid = %(gpu)s)
              AND (%(host)s::text IS NULL OR host = %(host)s)
              AND (%(rule)s::text IS NULL OR rule = %(rule)s)
            ORDER BY (state = 'resolved'), severity = 'warning', opened_at DESC, id DESC
            LIMIT %(limit)s OFFSET %(offset)s""",
        {"states": list(states) if states else None, "severity": severity, "gpu": gpu_uuid, "host": host,
         "rule": rule, "limit": limit, "offset": offset},
    ).fetchall()
    return [_alert(r) for r in rows]


def get_alert(conn: psycopg.Connection, alert_id: int) -> Alert:
    row = conn.execute(f"SELECT {_COLUMNS} FROM alerts WHERE id = %s", (alert_id,)).fetchone()
    if row is None:
        raise NotFound(f"no alert with id {alert_id}")
    return _alert(row)


def acknowledge(conn: psycopg.Connection, principal: Principal, alert_id: int, note: str | None = None,
                *, now: datetime | None = None) -> Alert:
    """An operator (or admin) takes ownership of an open alert; audited. Acknowledging twice changes nothing."""
    target = f"alert:{alert_id}"
    now = now or datetime.now(UTC)
    try:
        require_role(principal, Role.operator, "acknowledge alerts")
    except PermissionDenied:
        audit.record(conn, actor=principal.name, area="health", action="alert.ack", target=target, outcome="denied")
        raise
    if note is not None and len(note) > 500:
        raise InvalidInput("note must be at most 500 characters")
    with conn.transaction():
        row = conn.execute(f"SELECT {_COLUMNS} FROM alerts WHERE id = %s FOR UPDATE", (alert_id,)).fetchone()
        if row is None:
            raise NotFound(f"no alert with id {alert_id}")
        alert = _alert(row)
        if alert.state == "resolved":
            raise Conflict(f"alert {alert_id} is already resolved")
        if alert.state == "acknowledged":
            return alert
        row = conn.execute(
            f"""UPDATE alerts SET state = 'acknowledged', acknowledged_at = %(now)s,
                    acknowledged_by = %(who)s, ack_note = %(note)s, updated_at = %(now)s
                WHERE id = %(id)s RETURNING {_COLUMNS}""",
            {"now": now, "who": principal.name, "note": note, "id": alert_id},
        ).fetchone()
        record_events(conn, [AlertEvent("acknowledged", _alert(row), f"acknowledged by {principal.name}")], now,
                      principal.name)
        audit.record(conn, actor=principal.name, area="health", action="alert.ack", target=target, outcome="ok",
                     detail={"gpu_uuid": alert.gpu_uuid, "rule": alert.rule, "note": note})
    return _alert(row)
