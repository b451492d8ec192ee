"""The rollup worker: materializes the pending 1m/1h rollup buckets the sinks list (postgres profile; TimescaleDB's
continuous aggregates do it there) and keeps the precomputed GPU-minutes current (both profiles).

A pass works through the complete pending minutes, oldest first, then the complete pending hours, in transactions
of at most CHUNK buckets. In each it try-locks the buckets' advisory locks exclusively (`rollups.py`), skipping
any a sink is writing to right now, then recomputes the locked minutes from raw rows (hours from the exact minutes)
into the state tables and unlists them. Holding the lock, it sees every write committed to those buckets and no new
one can start, so the result is exact under any replay or concurrency; a crash rolls back and the buckets stay
pending, where the views aggregate them on the fly. A session advisory lock keeps one worker at a time (the others
skip the pass).

Freshness: a bucket is due once it ended `ROLLUP_MAX_DELAY_S / 2` ago (late samples of a just-closed minute have
landed by then, so it is recomputed once, not twice), and passes run every `ROLLUP_MAX_DELAY_S / 2`: a complete
minute is materialized at most `ROLLUP_MAX_DELAY_S` (plus one pass) after it ends or after a late write to it —
unless sinks keep writing into it, as while they work off a backlog. After each pass the worker refreshes the
precomputed GPU-minutes that spend reads (`gpu_minutes.py`). The sink runs the worker as a thread;
`stream-platform pipeline rollup` runs one pass by hand.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta

import psycopg

from backend.config import Settings
from backend.db import connect
from backend.db.migrate import profile_of
from backend.telemetry.gpu_minutes import refresh_from_settings
from backend.telemetry.sink.metrics import SinkMetrics
from backend.telemetry.sink.rollups import (
    LOCK_HOUR,
    LOCK_MINUTE,
    PENDING_1H,
    PENDING_1M,
    hours_from_minutes,
    lock_slot,
    minutes_from_raw,
    state_columns,
)

log = logging.getLogger(__name__)

_WORKER_LOCK = 0x524F4C4C  # session advisory lock: one rollup worker at a time
CHUNK = 60  # buckets per transaction: a big backfill is worked off in short transactions
_COLUMNS = ", ".join(state_columns())
_BUCKETS = "unnest(%(buckets)s::timestamptz[]) b(bucket)"


@dataclass(frozen=True)
class _Level:
    """One rollup level: its pending list, state table, bucket width, lock class and recomputation."""

    pending: str
    state: str
    width: str
    lock_class: int
    recompute: str

    def due(self) -> str:
        return (f"SELECT bucket, logged_at FROM {self.pending} WHERE bucket + interval '{self.width}' <= "
                "now() - %(settle)s ORDER BY bucket LIMIT %(limit)s")

    def lock(self) -> str:
        return (f"SELECT b AS bucket FROM unnest(%(buckets)s::timestamptz[]) b "
                f"WHERE pg_try_advisory_xact_lock({self.lock_class}, {lock_slot(self.lock_class, 'b')})")

    def statements(self) -> tuple[str, ...]:
        return (f"DELETE FROM {self.state} WHERE bucket = ANY(%(buckets)s)",
                f"INSERT INTO {self.state} ({_COLUMNS}) {self.recompute}",
                f"DELETE FROM {self.pending} WHERE bucket = ANY(%(buckets)s)")


MINUTES = _Level(PENDING_1M, "gpu_metrics_1m_state", "1 minute", LOCK_MINUTE, minutes_from_raw(_BUCKETS))
HOURS = _Level(PENDING_1H, "gpu_metrics_1h_state", "1 hour", LOCK_HOUR, hours_from_minutes(_BUCKETS))
# how long each bucket waited to be materialized: from when it was complete (its end, or the write that listed it)
_DELAYS = ("SELECT extract(epoch FROM clock_timestamp() - greatest(b + %(width)s::interval, l)) AS s "
           "FROM unnest(%(buckets)s::timestamptz[], %(logged)s::timestamptz[]) x(b, l)")


@dataclass
class PassReport:
    """What one pass did. `delays_s`: per materialized minute, seconds from complete to visible. `busy`: due
    buckets left for the next pass because a sink was writing to them."""

    minutes: int = 0
    hours: int = 0
    delays_s: list[float] = field(default_factory=list)
    busy: int = 0
    pending: int = 0
    skipped: bool = False
    gpu_hours: int = 0
    """Hours of precomputed GPU-minutes recounted (`gpu_minutes.py`)."""


def settle(settings: Settings) -> timedelta:
    """How long after its end a bucket is due, and how often passes run: half of ROLLUP_MAX_DELAY_S."""
    return timedelta(seconds=settings.rollup_max_delay_s / 2)


def run_pass(conn: psycopg.Connection, due_after: timedelta, stop: threading.Event | None = None) -> PassReport:
    """Materialize every bucket that ended at least `due_after` ago and is pending, minutes first (until `stop` is
    set: it is checked between transactions). `conn` must be in autocommit mode; another worker holding the worker
    lock makes this a no-op (`skipped`)."""
    if not conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (_WORKER_LOCK,)).fetchone()["ok"]:
        return PassReport(skipped=True)
    report = PassReport()
    try:
        for level in (MINUTES, HOURS):
            busy = 0
            while not (stop and stop.is_set()) and (more := _chunk(conn, level, due_after, busy, report)) is not None:
                busy += more
        report.pending = conn.execute(f"SELECT count(*) AS n FROM {PENDING_1M}").fetchone()["n"]
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_WORKER_LOCK,))
    return report


def _chunk(conn: psycopg.Connection, level: _Level, due_after: timedelta, skip: int, report: PassReport
           ) -> int | None:
    """One transaction over the next CHUNK due buckets of `level`, after the `skip` busy ones met before; returns
    how many of them were busy, or None when nothing was due."""
    delays: list[float] = []
    with conn.transaction():
        due = conn.execute(level.due() + " OFFSET %(skip)s",
                           {"settle": due_after, "limit": CHUNK, "skip": skip}).fetchall()
        if not due:
            return None
        logged = {r["bucket"]: r["logged_at"] for r in due}
        locked = [r["bucket"] for r in conn.execute(level.lock(), {"buckets": list(logged)})]
        if locked:
            params = {"buckets": locked, "logged": [logged[b] for b in locked], "width": level.width}
            for statement in level.statements():
                conn.execute(statement, params)
            delays = [float(r["s"]) for r in conn.execute(_DELAYS, params)]
    if level is MINUTES:
        report.minutes += len(locked)
        report.delays_s += delays
    else:
        report.hours += len(locked)
    report.busy += len(due) - len(locked)
    return len(due) - len(locked)


def materialize(settings: Settings, due_after: timedelta | None = None) -> PassReport:
    """One pass on a connection of its own (`pipeline rollup`, benchmarks, tests), then the precomputed GPU-minutes
    refreshed; `due_after` defaults to the worker's settle time. A timescaledb database has no rollups to
    materialize (continuous aggregates), only the GPU-minutes."""
    due_after = settle(settings) if due_after is None else due_after
    with connect(settings, autocommit=True) as conn:
        report = run_pass(conn, due_after) if profile_of(conn) == "postgres" else PassReport()
        report.gpu_hours = refresh_from_settings(conn, settings, due_after).hours
        return report


class RollupWorker:
    """Runs passes every ROLLUP_MAX_DELAY_S / 2 in a daemon thread of the sink, on its own connection. A failed
    pass (database down) is logged and tried again at the next tick; it never stops the sink."""

    def __init__(self, settings: Settings, metrics: SinkMetrics, profile: str) -> None:
        self._settings = settings
        self._profile = profile
        self._metrics = metrics
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rollup-worker", daemon=True)
        self._conn: psycopg.Connection | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the thread after the transaction under way (at most CHUNK buckets)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        every = settle(self._settings)
        try:
            while not self._stop.wait(every.total_seconds()):
                self._tick(every)
        finally:
            if self._conn is not None:
                self._conn.close()

    def _tick(self, due_after: timedelta) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = connect(self._settings, autocommit=True)
            report = run_pass(self._conn, due_after, self._stop) if self._profile == "postgres" else PassReport()
            refresh_from_settings(self._conn, self._settings, due_after, self._stop)
        except psycopg.Error as exc:
            self._metrics.rollup_failures.inc()
            log.warning("rollup pass failed (%s); trying again in %.1fs", str(exc).splitlines()[0],
                        due_after.total_seconds())
            if self._conn is not None:
                self._conn.close()
            return
        if report.skipped:
            return
        self._metrics.rollup_minutes.inc(report.minutes)
        for delay in report.delays_s:
            self._metrics.rollup_delay.observe(delay)
        self._metrics.rollup_pending.set(report.pending)
