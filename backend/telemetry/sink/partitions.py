"""Storage upkeep: daily partitions ahead of time and retention (postgres profile), policies (timescaledb profile).

The postgres profile partitions `gpu_metrics` by day (`gpu_metrics_pYYYYMMDD`, UTC days). The sink creates the
partitions a batch needs before writing it; `stream-platform pipeline maintain` (run it daily, e.g. from cron or
the demo) creates the next days ahead and applies the RETENTION_*_DAYS settings in both profiles. While archiving is
on (ARCHIVE_URL), raw days go only when their verified archive still matches them (telemetry/archive.py).

A day's partition is only appended to, so autovacuum's insert-triggered runs are switched off for it: on the day
being written they scan and dirty every page the sinks just filled and write about the table's size again in WAL
(full-page images), competing with the sinks' commits (docs/benchmarks.md). `maintain` vacuums each day once it is
over (`VACUUM (FREEZE, ANALYZE)`: it is never written again, so its pages are frozen once and skipped by every later
vacuum). Autoanalyze, and the vacuums that prevent transaction ID wraparound, still run as usual.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import psycopg
from psycopg import sql

from backend.config import Settings, get_settings
from backend.db import connect
from backend.db.migrate import profile_of

log = logging.getLogger(__name__)

_PARTITION = re.compile(r"gpu_metrics_p(\d{8})")
_LOCK_KEY = 0x53494E4B  # advisory lock: one partition creator at a time
AHEAD_DAYS = 3
_NO_INSERT_VACUUM = "autovacuum_vacuum_insert_threshold = -1"


def partition_name(day: date) -> str:
    return f"gpu_metrics_p{day:%Y%m%d}"


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def existing_partitions(conn: psycopg.Connection) -> set[date]:
    rows = conn.execute(
        "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'gpu_metrics'::regclass"
    ).fetchall()
    days = set()
    for row in rows:
        name = row["name"] if isinstance(row, dict) else row[0]
        match = _PARTITION.fullmatch(name)
        if match:
            days.add(datetime.strptime(match[1], "%Y%m%d").date())
    return days


def ensure_partitions(conn: psycopg.Connection, days: Iterable[date]) -> list[date]:
    """Create the missing daily partitions for `days` in their own transaction; returns those created.
    An advisory lock keeps concurrent sinks from racing on the same day."""
    wanted = set(days)
    created: list[date] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        for day in sorted(wanted - existing_partitions(conn)):
            conn.execute(
                sql.SQL("CREATE TABLE {} PARTITION OF gpu_metrics FOR VALUES FROM ({}) TO ({}) "
                        f"WITH ({_NO_INSERT_VACUUM})").format(
                    sql.Identifier(partition_name(day)), sql.Literal(_midnight(day)),
                    sql.Literal(_midnight(day + timedelta(days=1))))
            )
            created.append(day)
    if created:
        log.info("created gpu_metrics partitions for %s", ", ".join(d.isoformat() for d in created))
    return created


def vacuum_finished_days(conn: psycopg.Connection, today: date) -> list[date]:
    """`VACUUM (FREEZE, ANALYZE)` the partitions of days before `today` not vacuumed since their day ended (after a
    statistics reset they are vacuumed again, which costs little once frozen); returns their days. `conn` must be in
    autocommit mode, with dict rows."""
    done: list[date] = []
    for day in sorted(d for d in existing_partitions(conn) if d < today):
        name = partition_name(day)
        vacuumed = conn.execute("SELECT (SELECT last_vacuum FROM pg_stat_user_tables WHERE relid = %s::regclass) "
                                "AS at", (name,)).fetchone()["at"]
        if vacuumed is None or vacuumed < _midnight(day + timedelta(days=1)):
            conn.execute(sql.SQL("VACUUM (FREEZE, ANALYZE) {}").format(sql.Identifier(name)))
            done.append(day)
    return done


DropGuard = Callable[[psycopg.Connection, date], bool]


def _lock_out_writers(conn: psycopg.Connection, guard: DropGuard | None) -> None:
    """With a guard, block inserts until the drop commits, so the guard's answer still holds when the day goes.
    (The drop would take the table's exclusive lock anyway; taking it first also rules out a deadlock with a sink
    writing a late sample into that very day.)"""
    if guard is not None:
        conn.execute("LOCK TABLE gpu_metrics IN SHARE MODE")


def drop_expired_partitions(conn: psycopg.Connection, keep_days: int, today: date | None = None,
                            guard: DropGuard | None = None) -> list[date]:
    """Drop the daily partitions whose whole day lies before the retention window (and that `guard` allows)."""
    cutoff = (today or datetime.now(UTC).date()) - timedelta(days=keep_days)
    dropped: list[date] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        expired = [day for day in sorted(existing_partitions(conn)) if day + timedelta(days=1) <= cutoff]
        if expired:
            _lock_out_writers(conn, guard)
        for day in expired:
            if guard is None or guard(conn, day):
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(partition_name(day))))
                dropped.append(day)
    if dropped:
        log.info("dropped expired gpu_metrics partitions %s", ", ".join(d.isoformat() for d in dropped))
    return dropped


@dataclass
class MaintenanceReport:
    profile: str
    partitions_created: list[date] = field(default_factory=list)
    partitions_dropped: list[date] = field(default_factory=list)
    partitions_vacuumed: list[date] = field(default_factory=list)
    partitions_kept: dict[date, str] = field(default_factory=dict)  # expired, kept while not archived: why
    rows_deleted: dict[str, int] = field(default_factory=dict)
    policies: dict[str, int] = field(default_factory=dict)


_TIMESCALE_RETENTION = (
    ("gpu_metrics", "retention_raw_days"),
    ("gpu_metrics_1m", "retention_1m_days"),
    ("gpu_metrics_1h", "retention_1h_days"),
    ("token_usage", "retention_1h_days"),
)
_POSTGRES_RETENTION = (  # in one transaction: spend never sees precomputed hours whose minutes are gone
    ("gpu_minutes_1h_done", "hour", "retention_1m_days"),
    ("gpu_minutes_1h", "hour", "retention_1m_days"),
    ("gpu_metrics_1m_state", "bucket", "retention_1m_days"),
    ("gpu_metrics_1h_state", "bucket", "retention_1h_days"),
    ("token_usage", "time", "retention_1h_days"),
)


def maintain(settings: Settings | None = None, today: date | None = None) -> MaintenanceReport:
    """Partitions ahead and retention from settings (postgres), or retention policies from settings (timescaledb).
    Token usage is billing data: it is kept as long as the hourly rollups."""
    from backend.telemetry.archive import retention_guard  # pyarrow: loaded for upkeep, not by every sink

    settings = settings or get_settings()
    today = today or datetime.now(UTC).date()
    guard = retention_guard(settings)
    with connect(settings, autocommit=True) as conn:
        report = MaintenanceReport(profile_of(conn))
        if report.profile == "timescaledb":
            for relation, setting in _TIMESCALE_RETENTION:
                days = getattr(settings, setting)
                conn.execute("SELECT remove_retention_policy(%s, if_exists => true)", (relation,))
                if guard is not None and relation == "gpu_metrics":
                    continue  # a policy would drop unarchived chunks: drop them here, day by day
                conn.execute("SELECT add_retention_policy(%s, %s::interval)", (relation, f"{days} days"))
                report.policies[relation] = days
            if guard is not None:
                report.partitions_dropped = _drop_archived_chunks(conn, settings.retention_raw_days, today, guard)
                report.partitions_kept = guard.refused
            return report
        report.partitions_created = ensure_partitions(conn, (today + timedelta(days=i) for i in range(AHEAD_DAYS + 1)))
        report.partitions_dropped = drop_expired_partitions(conn, settings.retention_raw_days, today, guard)
        report.partitions_kept = guard.refused if guard is not None else {}
        report.partitions_vacuumed = vacuum_finished_days(conn, today)
        with conn.transaction():
            for table, column, setting in _POSTGRES_RETENTION:
                cutoff = _midnight(today - timedelta(days=getattr(settings, setting)))
                cur = conn.execute(sql.SQL("DELETE FROM {} WHERE {} < %s").format(sql.Identifier(table),
                                                                                  sql.Identifier(column)), (cutoff,))
                report.rows_deleted[table] = cur.rowcount
    return report


def _drop_archived_chunks(conn: psycopg.Connection, keep_days: int, today: date, guard: DropGuard) -> list[date]:
    """timescaledb profile with archiving on: drop the one-day chunks of expired days that the guard allows."""
    from backend.telemetry.archive import days_with_data  # as in maintain

    dropped: list[date] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        expired = days_with_data(conn, today - timedelta(days=keep_days))
        if expired:
            _lock_out_writers(conn, guard)
        for day in expired:
            if guard(conn, day):
                conn.execute("SELECT drop_chunks('gpu_metrics', older_than => %s::timestamptz, "
                             "newer_than => %s::timestamptz)", (_midnight(day + timedelta(days=1)), _midnight(day)))
                dropped.append(day)
    return dropped
