"""Alert lifecycle: open → (acknowledged) → resolved, one active alert per (GPU, rule).

Flap suppression: an alert resolves only after its condition has been clear for `resolve_after_evaluations`
consecutive evaluations and `resolve_hold_s` seconds since it last fired; a condition that returns within
`reopen_window_s` of the resolution reopens the same alert (counted in `reopen_count`) instead of a new one.
A GPU whose telemetry is stale keeps its alerts as they are: no data is not the same as clear.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

from backend import audit
from backend.config import Settings
from backend.errors import Conflict, InvalidInput, NotFound
from backend.health.findings import SEVERITY_RANK, Finding, GpuHealth
from backend.identity.principal import PermissionDenied, Principal, Role, require_role

AlertState = Literal["open", "acknowledged", "resolved"]
ALERT_STATES: tuple[AlertState, ...] = ("open", "acknowledged", "resolved")
EventKind = Literal["opened", "reopened", "escalated", "acknowledged", "resolved"]


@dataclass(frozen=True)
class AlertPolicy:
    resolve_after_evaluations: int = 3
    resolve_hold_s: float = 120.0
    reopen_window_s: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertPolicy:
        return cls(settings.health_resolve_after_evaluations, settings.health_resolve_hold_s,
                   settings.health_reopen_window_s)


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


@dataclass(frozen=True)
class AlertEventRecord:
    """One line of an alert's timeline, with the alert as it was then and whether the webhook got it."""

    id: int
    alert_id: int
    kind: EventKind
    at: datetime
    actor: str
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
        active = {
            (a.gpu_uuid, a.rule): a
            for a in map(_alert, conn.execute(
                f"SELECT {_COLUMNS} FROM alerts WHERE state <> 'resolved' FOR UPDATE").fetchall())
        }
        for health in results:
            for finding in health.findings:
                current = active.pop((health.gpu_uuid, finding.rule), None)
                event = _fire(conn, health, finding, current, now, policy)
                if event:
                    events.append(event)
        evaluated = {h.gpu_uuid: h for h in results}
        for alert in active.values():
            health = evaluated.get(alert.gpu_uuid)
            if health is None or health.status == "unknown":
                continue
            event = _clear(conn, alert, now, policy)
            if event:
                events.append(event)
        record_events(conn, events, now, "system")
    return events


def record_events(conn: psycopg.Connection, events: list[AlertEvent], at: datetime, actor: str) -> None:
    """Append to the alerts' timelines (and the webhook's outbox)."""
    if not events:
        return
    conn.execute(
        """INSERT INTO alert_events (alert_id, kind, at, actor, alert)
           SELECT * FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::text[], %s::jsonb[])""",
        ([e.alert.id for e in events], [e.kind for e in events], [at] * len(events), [actor] * len(events),
         [Jsonb(alert_json(e.alert)) for e in events]),
    )


def history(conn: psycopg.Connection, alert_id: int) -> list[AlertEventRecord]:
    """An alert's timeline, oldest first."""
    get_alert(conn, alert_id)
    rows = conn.execute(
        """SELECT id, alert_id, kind, at, actor, alert, attempts, delivered_at FROM alert_events
           WHERE alert_id = %s ORDER BY id""",
        (alert_id,),
    ).fetchall()
    return [AlertEventRecord(**r) for r in rows]


def _fire(conn: psycopg.Connection, health: GpuHealth, finding: Finding, current: Alert | None, now: datetime,
          policy: AlertPolicy) -> AlertEvent | None:
    facts = {"severity": finding.severity, "title": finding.title, "evidence": Jsonb(finding.evidence),
             "action": finding.action, "now": now}
    if current is not None:
        escalated = SEVERITY_RANK[finding.severity] > SEVERITY_RANK[current.severity]
        row = conn.execute(
            f"""UPDATE alerts SET severity = %(severity)s, title = %(title)s, evidence = %(evidence)s,
                    action = %(action)s, last_firing_at = %(now)s, updated_at = %(now)s, clear_count = 0,
                    state = CASE WHEN %(escalated)s THEN 'open' ELSE state END
                WHERE id = %(id)s RETURNING {_COLUMNS}""",
            facts | {"id": current.id, "escalated": escalated},
        ).fetchone()
        return AlertEvent("escalated", _alert(row)) if escalated else None
    reopen_after = now - timedelta(seconds=policy.reopen_window_s)
    row = conn.execute(
        f"""UPDATE alerts SET state = 'open', severity = %(severity)s, title = %(title)s, evidence = %(evidence)s,
                action = %(action)s, last_firing_at = %(now)s, updated_at = %(now)s, clear_count = 0,
                reopen_count = reopen_count + 1, resolved_at = NULL, acknowledged_at = NULL,
                acknowledged_by = NULL, ack_note = NULL
            WHERE id = (SELECT id FROM alerts WHERE gpu_uuid = %(gpu)s AND rule = %(rule)s AND state = 'resolved'
                          AND resolved_at >= %(after)s ORDER BY resolved_at DESC LIMIT 1)
            RETURNING {_COLUMNS}""",
        facts | {"gpu": health.gpu_uuid, "rule": finding.rule, "after": reopen_after},
    ).fetchone()
    if row is not None:
        return AlertEvent("reopened", _alert(row))
    row = conn.execute(
        f"""INSERT INTO alerts (gpu_uuid, host, gpu_index, model, rule, severity, state, title, evidence, action,
                                since, opened_at, last_firing_at, updated_at)
            VALUES (%(gpu)s, %(host)s, %(index)s, %(model)s, %(rule)s, %(severity)s, 'open', %(title)s,
                    %(evidence)s, %(action)s, %(since)s, %(now)s, %(now)s, %(now)s)
            RETURNING {_COLUMNS}""",
        facts | {"gpu": health.gpu_uuid, "host": health.host, "index": health.gpu_index, "model": health.model,
                 "rule": finding.rule, "since": finding.since},
    ).fetchone()
    return AlertEvent("opened", _alert(row))


def _clear(conn: psycopg.Connection, alert: Alert, now: datetime, policy: AlertPolicy) -> AlertEvent | None:
    clears = alert.clear_count + 1
    held = (now - alert.last_firing_at).total_seconds() >= policy.resolve_hold_s
    resolve = clears >= policy.resolve_after_evaluations and held
    row = conn.execute(
        f"""UPDATE alerts SET clear_count = %(clears)s, updated_at = %(now)s,
                state = CASE WHEN %(resolve)s THEN 'resolved' ELSE state END,
                resolved_at = CASE WHEN %(resolve)s THEN %(now)s ELSE resolved_at END
            WHERE id = %(id)s RETURNING {_COLUMNS}""",
        {"clears": clears, "now": now, "resolve": resolve, "id": alert.id},
    ).fetchone()
    return AlertEvent("resolved", _alert(row)) if resolve else None


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
        record_events(conn, [AlertEvent("acknowledged", _alert(row))], now, principal.name)
        audit.record(conn, actor=principal.name, area="health", action="alert.ack", target=target, outcome="ok",
                     detail={"gpu_uuid": alert.gpu_uuid, "rule": alert.rule, "note": note})
    return _alert(row)
