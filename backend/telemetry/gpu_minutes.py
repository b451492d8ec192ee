"""GPU-minutes per GPU, host and UTC hour (`gpu_minutes_1h`, migrations 0252-0253): spend's precomputed part.

Spend counts, per GPU, the 1-minute rollup buckets that have samples and those whose average `gpu_util` is below the
idle threshold (`backend/costs/spend.py`). Counting a month of minutes at every page view made the Overview slow, so
complete hours are counted once, here. Readers take an hour from the table only while it is *trusted* (the view
`gpu_minutes_1h_trusted`: computed at the threshold they ask for, and written to by nobody since) and every other
minute from `gpu_metrics_1m`, so the table can lag or be empty and the answer stays the rollups' own. Why that holds:
- every write of raw rows lists its UTC hours in `gpu_minutes_1h_dirty` in the writer's own transaction
  (`mark_dirty`: the postgres profile's rollup invalidation, the timescaledb profile's insert);
- `refresh` reads the marks of complete hours first; on timescaledb it then refreshes the 1-minute continuous
  aggregate over those hours, so its materialization holds every write those marks stand for; then, in one REPEATABLE
  READ snapshot, it recounts the hours from `gpu_metrics_1m`, records them as done at the threshold and deletes
  exactly the marks it read. A write that lands meanwhile leaves a mark of its own: its hour stays untrusted until
  the next pass;
- on the postgres profile an hour with pending rollup buckets waits, so it is counted from materialized rollups;
- retention removes an hour's rows in the transaction that removes its minutes (postgres, `partitions.maintain`);
  on timescaledb the trusted view leaves out hours the aggregate's retention policy may have dropped.
The sink's rollup worker runs `refresh` after each pass and `stream-platform pipeline rollup` runs one by hand, on
either profile.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from backend.config import Settings
from backend.db.migrate import profile_of

DIRTY = "gpu_minutes_1h_dirty"
_LOCK = 0x4750554D  # session advisory lock: one refresher at a time
CHUNK = 24  # hours per transaction
MAX_HOURS = 48  # per pass, newest first: a backfill reaches today and this month first
_HOUR = timedelta(hours=1)

_MARKS = (f"SELECT hour, array_agg(id) AS ids FROM {DIRTY} "
          "WHERE hour + interval '1 hour' <= now() - %(settle)s GROUP BY hour")
_TODO = """
    SELECT hour FROM (
        SELECT h AS hour FROM generate_series(
            date_trunc('hour', greatest(%(since)s, coalesce((SELECT min(first_seen) FROM gpus), now())), 'UTC'),
            now() - %(settle)s - interval '1 hour', interval '1 hour') h
        WHERE NOT EXISTS (SELECT 1 FROM gpu_minutes_1h_done d WHERE d.hour = h AND d.idle_threshold = %(idle)s)
        UNION SELECT unnest(%(marked)s::timestamptz[])) wanted
    WHERE true {settled}
    ORDER BY hour = ANY(%(marked)s::timestamptz[]) DESC, hour DESC LIMIT %(limit)s"""
_SETTLED_POSTGRES = """
      AND NOT EXISTS (SELECT 1 FROM gpu_metrics_1h_pending p WHERE p.bucket = wanted.hour)
      AND NOT EXISTS (SELECT 1 FROM gpu_metrics_1m_pending p
                      WHERE p.bucket >= wanted.hour AND p.bucket < wanted.hour + interval '1 hour')"""
"""postgres profile: hours whose rollup buckets are all materialized (a pending one is recounted from raw rows on
the fly, and its stored sum, added in another order, could differ in the last bit)."""
_RECOUNT = (
    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    "DELETE FROM gpu_minutes_1h WHERE hour = ANY(%(hours)s::timestamptz[])",
    """INSERT INTO gpu_minutes_1h (hour, gpu_uuid, host, minutes, idle_minutes)
       SELECT h.hour, r.gpu_uuid, r.host, count(*), count(*) FILTER (WHERE r.gpu_util_avg < %(idle)s)
       FROM unnest(%(hours)s::timestamptz[]) h(hour)
       CROSS JOIN LATERAL (SELECT gpu_uuid, host, gpu_util_avg FROM gpu_metrics_1m
                           WHERE bucket >= h.hour AND bucket < h.hour + interval '1 hour' AND samples > 0) r
       GROUP BY 1, 2, 3""",
    """INSERT INTO gpu_minutes_1h_done (hour, idle_threshold) SELECT unnest(%(hours)s::timestamptz[]), %(idle)s
       ON CONFLICT (hour) DO UPDATE SET idle_threshold = excluded.idle_threshold, computed_at = now()""",
    f"DELETE FROM {DIRTY} WHERE id = ANY(%(seen)s::bigint[])",
)
"""One snapshot: the minutes counted are exactly those the marks deleted stand for (REPEATABLE READ)."""


def mark_dirty(relation: str, column: str) -> str:
    """SQL for a writer's CTE: list the UTC hours of `column` in `relation` as written to (insert only: concurrent
    writers never wait on each other)."""
    return f"INSERT INTO {DIRTY} (hour) SELECT DISTINCT date_trunc('hour', {column}, 'UTC') FROM {relation} ORDER BY 1"


@dataclass(frozen=True)
class RefreshReport:
    hours: int = 0
    """Hours recounted."""
    skipped: bool = False
    """Another refresher was at work."""


def refresh(conn: psycopg.Connection, *, idle_threshold_pct: float, since: datetime, settle: timedelta,
            stop: threading.Event | None = None, max_hours: int = MAX_HOURS) -> RefreshReport:
    """Recount the complete hours (ended `settle` ago) that were written to since their count, or that have no count
    at this threshold from `since` on, written-to first, then newest first, at most `max_hours`, in transactions of
    CHUNK hours (`stop` is checked between them). `conn`: autocommit, dict rows."""
    if not conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (_LOCK,)).fetchone()["ok"]:
        return RefreshReport(skipped=True)
    try:
        postgres = profile_of(conn) == "postgres"
        marks = {r["hour"]: r["ids"] for r in conn.execute(_MARKS, {"settle": settle})}
        todo = [r["hour"] for r in conn.execute(
            _TODO.format(settled=_SETTLED_POSTGRES if postgres else ""),
            {"since": since, "settle": settle, "idle": float(idle_threshold_pct), "marked": list(marks),
             "limit": max_hours})]
        done = 0
        for first in range(0, len(todo), CHUNK):
            if stop is not None and stop.is_set():
                break
            hours = todo[first:first + CHUNK]
            if not postgres:
                _refresh_aggregate(conn, hours)
            params = {"hours": hours, "idle": float(idle_threshold_pct),
                      "seen": [i for h in hours for i in marks.get(h, ())]}
            with conn.transaction():
                for statement in _RECOUNT:
                    conn.execute(statement, params)
            done += len(hours)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK,))
    return RefreshReport(hours=done)


def refresh_from_settings(conn: psycopg.Connection, settings: Settings, settle: timedelta,
                          stop: threading.Event | None = None) -> RefreshReport:
    """`refresh` at COST_IDLE_UTIL_THRESHOLD, over the 1-minute rollups' retention (RETENTION_1M_DAYS)."""
    since = datetime.now(UTC) - timedelta(days=settings.retention_1m_days)
    return refresh(conn, idle_threshold_pct=settings.cost_idle_util_threshold, since=since, settle=settle, stop=stop)


def _refresh_aggregate(conn: psycopg.Connection, hours: list[datetime]) -> None:
    """timescaledb: materialize every committed write into the 1-minute aggregate over `hours`, one contiguous
    stretch at a time (outside a transaction, as TimescaleDB requires)."""
    stretches: list[list[datetime]] = []
    for hour in sorted(hours):
        if stretches and stretches[-1][1] == hour:
            stretches[-1][1] = hour + _HOUR
        else:
            stretches.append([hour, hour + _HOUR])
    for lo, hi in stretches:
        conn.execute("CALL refresh_continuous_aggregate('gpu_metrics_1m', %s::timestamptz, %s::timestamptz)", (lo, hi))
