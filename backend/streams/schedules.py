"""Scheduled streams: an event name, a stream key, the VM that carries it, a window and a grace period.

A key with a schedule (not cancelled) is valid only inside one of its windows ± grace: the callbacks fold
`IN_SCHEDULE_SQL` into the one query that reads the key, and refuse with "outside schedule". The VM area starts
the VM a lead time before the start (`due_starts`, `mark_started`) and holds it up during the window
(`vm_windows`, read by the auto-shutdown "schedule" signal); a start that fails is tried again after a back-off
that doubles with each failure in a row (`START_RETRY`). Operators schedule and cancel; viewers list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from backend import audit
from backend.backoff import BackoffPolicy, lock_length
from backend.errors import Conflict, InvalidInput, NotFound
from backend.identity.principal import Principal, Role, require_role
from backend.parsing import parse_duration

MAX_GRACE = timedelta(hours=6)
MAX_WINDOW = timedelta(days=7)
START_RETRY = BackoffPolicy(threshold=1, base=timedelta(seconds=30), max=timedelta(minutes=5))
"""A failed VM start is tried again 30 s later, then 1, 2, 4 and every 5 minutes: within any lead time of minutes."""
IN_SCHEDULE_SQL = """(SELECT bool_or(tstzrange(s.starts_at - s.grace, s.ends_at + s.grace) @> %(now)s::timestamptz)
    FROM stream_schedules s WHERE s.key_id = k.id AND s.cancelled_at IS NULL)"""
"""For a key row aliased `k`: NULL when the key has no schedule, else whether `now` is inside a window ± grace."""
_COLUMNS = """s.id, s.name, s.key_id, k.app, k.stream, s.vm, s.zone, s.starts_at, s.ends_at, s.grace, s.created_by,
    s.created_at, s.cancelled_at, s.vm_started_at, s.vm_start_error, s.vm_start_failures, s.vm_start_retry_at"""


@dataclass(frozen=True)
class Schedule:
    id: int
    name: str
    key_id: str
    app: str
    stream: str
    vm: str
    zone: str | None
    starts_at: datetime
    ends_at: datetime
    grace: timedelta
    created_by: str
    created_at: datetime
    cancelled_at: datetime | None
    vm_started_at: datetime | None
    vm_start_error: str | None
    vm_start_failures: int
    vm_start_retry_at: datetime | None

    def state(self, now: datetime | None = None) -> str:
        """`cancelled`, `upcoming`, `open` (inside the window ± grace: the key is valid) or `over`."""
        now = now or datetime.now(UTC)
        if self.cancelled_at is not None:
            return "cancelled"
        if now < self.starts_at - self.grace:
            return "upcoming"
        return "open" if now <= self.ends_at + self.grace else "over"


def create(conn: psycopg.Connection, actor: Principal, name: str, key_id: str, vm: str, starts_at: datetime,
           ends_at: datetime, *, grace: timedelta = timedelta(0), zone: str | None = None) -> Schedule:
    """Schedule a stream (operator+, audited). Windows of one key may not overlap: each says which VM carries it."""
    require_role(actor, Role.operator, "schedule streams")
    name, vm = name.strip(), vm.strip()
    starts_at, ends_at = _utc(starts_at), _utc(ends_at)
    if not 1 <= len(name) <= 200:
        raise InvalidInput("schedule name must be 1-200 characters")
    if not 1 <= len(vm) <= 128:
        raise InvalidInput("VM name must be 1-128 characters")
    if ends_at <= starts_at:
        raise InvalidInput("the schedule must end after it starts")
    if ends_at - starts_at > MAX_WINDOW:
        raise InvalidInput(f"a scheduled window may last at most {MAX_WINDOW.days} days")
    if not timedelta(0) <= grace <= MAX_GRACE:
        raise InvalidInput(f"grace must be between 0 and {MAX_GRACE.total_seconds() / 3600:g} h")
    with conn.transaction():
        key = conn.execute("SELECT id, revoked_at FROM stream_keys WHERE id = %s FOR UPDATE", (key_id,)).fetchone()
        if key is None:
            raise NotFound(f"no stream key {key_id}")
        if key["revoked_at"] is not None:
            raise InvalidInput(f"stream key {key_id} is revoked")
        clash = conn.execute(
            """SELECT id, name FROM stream_schedules WHERE key_id = %s AND cancelled_at IS NULL
                 AND tstzrange(starts_at - grace, ends_at + grace) && tstzrange(%s::timestamptz - %s, %s + %s)""",
            (key_id, starts_at, grace, ends_at, grace),
        ).fetchone()
        if clash:
            raise Conflict(f"key {key_id} is already scheduled then: schedule {clash['id']} ({clash['name']})")
        row = conn.execute(
            """INSERT INTO stream_schedules (name, key_id, vm, zone, starts_at, ends_at, grace, created_by)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
            (name, key_id, vm, zone, starts_at, ends_at, grace, actor.name),
        ).fetchone()
        audit.record(conn, actor=actor.name, area="streams", action="schedule.create", target=str(row["id"]),
                     outcome="ok", detail={"name": name, "key_id": key_id, "vm": vm, "starts_at": starts_at.isoformat(),
                                           "ends_at": ends_at.isoformat(), "grace_s": grace.total_seconds()})
    return get(conn, row["id"])


def get(conn: psycopg.Connection, schedule_id: int) -> Schedule:
    row = conn.execute(f"SELECT {_COLUMNS} FROM stream_schedules s JOIN stream_keys k ON k.id = s.key_id "
                       "WHERE s.id = %s", (schedule_id,)).fetchone()
    if row is None:
        raise NotFound(f"no schedule {schedule_id}")
    return Schedule(**row)


def list_schedules(conn: psycopg.Connection, actor: Principal, *, include_past: bool = False,
                   vm: str | None = None, now: datetime | None = None) -> list[Schedule]:
    """Schedules by start time: upcoming and open ones (and over or cancelled ones when asked)."""
    require_role(actor, Role.viewer, "list scheduled streams")
    rows = conn.execute(
        f"""SELECT {_COLUMNS} FROM stream_schedules s JOIN stream_keys k ON k.id = s.key_id
            WHERE (%(past)s OR (s.cancelled_at IS NULL AND s.ends_at + s.grace >= %(now)s))
              AND (%(vm)s::text IS NULL OR s.vm = %(vm)s)
            ORDER BY s.starts_at, s.id""",
        {"past": include_past, "now": now or datetime.now(UTC), "vm": vm},
    ).fetchall()
    return [Schedule(**r) for r in rows]


def cancel(conn: psycopg.Connection, actor: Principal, schedule_id: int) -> Schedule:
    """Cancel a schedule (operator+, audited): its window no longer opens the key nor holds the VM."""
    require_role(actor, Role.operator, "cancel scheduled streams")
    with conn.transaction():
        row = conn.execute("UPDATE stream_schedules SET cancelled_at = now() WHERE id = %s AND cancelled_at IS NULL "
                           "RETURNING id", (schedule_id,)).fetchone()
        if row is None:
            get(conn, schedule_id)  # NotFound when it does not exist
            raise Conflict(f"schedule {schedule_id} is already cancelled")
        audit.record(conn, actor=actor.name, area="streams", action="schedule.cancel", target=str(schedule_id),
                     outcome="ok")
    return get(conn, schedule_id)


def due_starts(conn: psycopg.Connection, lead: timedelta, now: datetime) -> list[Schedule]:
    """Schedules whose VM should be started now: within `lead` of the start, before the end, not started yet, and
    not backing off after a failed start."""
    rows = conn.execute(
        f"""SELECT {_COLUMNS} FROM stream_schedules s JOIN stream_keys k ON k.id = s.key_id
            WHERE s.cancelled_at IS NULL AND s.vm_started_at IS NULL
              AND s.starts_at - %(lead)s <= %(now)s AND s.ends_at > %(now)s
              AND (s.vm_start_retry_at IS NULL OR s.vm_start_retry_at <= %(now)s)
            ORDER BY s.starts_at, s.id""",
        {"lead": lead, "now": now},
    ).fetchall()
    return [Schedule(**r) for r in rows]


def mark_started(conn: psycopg.Connection, schedule: Schedule, at: datetime, error: str | None) -> datetime | None:
    """Record the starter's attempt on `schedule` (as `due_starts` read it): a success ends the attempts; a failure
    is kept and counted, and the next try waits `START_RETRY`'s back-off. Returns when that is (None on success)."""
    if error is None:
        conn.execute("UPDATE stream_schedules SET vm_started_at = %s, vm_start_error = NULL, vm_start_retry_at = NULL "
                     "WHERE id = %s", (at, schedule.id))
        return None
    failures = schedule.vm_start_failures + 1
    retry_at = at + lock_length(failures - 1, START_RETRY)
    conn.execute("UPDATE stream_schedules SET vm_start_error = %s, vm_start_failures = %s, vm_start_retry_at = %s "
                 "WHERE id = %s", (error, failures, retry_at, schedule.id))
    return retry_at


def vm_windows(conn: psycopg.Connection, vm: str, lead: timedelta, now: datetime) -> list[Schedule]:
    """Schedules holding `vm` up at `now`: from `lead` before the start (minus grace) to the end plus grace."""
    rows = conn.execute(
        f"""SELECT {_COLUMNS} FROM stream_schedules s JOIN stream_keys k ON k.id = s.key_id
            WHERE s.vm = %(vm)s AND s.cancelled_at IS NULL AND s.ends_at + s.grace >= %(now)s
              AND s.starts_at - s.grace - %(lead)s <= %(now)s
            ORDER BY s.starts_at""",
        {"vm": vm, "lead": lead, "now": now},
    ).fetchall()
    return [Schedule(**r) for r in rows]


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """A schedule time: ISO 8601 (`2026-12-04T18:00`, UTC unless it names an offset) or `+DURATION` from now."""
    value = text.strip()
    if value.startswith("+"):
        return (now or datetime.now(UTC)) + parse_duration(value[1:], what="time offset", allow_zero=True)
    try:
        return _utc(datetime.fromisoformat(value))
    except ValueError:
        raise InvalidInput(f"invalid time {text!r}: use ISO 8601 (2026-12-04T18:00, UTC by default) or +30m") from None


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
