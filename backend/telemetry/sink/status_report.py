"""The sink's own report of where it stands, kept in `sink_status` (migration 0111) for the console to read.

Why: no page may ask the broker while it renders (a probe consumer costs about 1.6 s on tansu), and the sink already
knows what the Pipeline page shows: its partitions, the offsets it committed, the high watermark of every fetch
response (current on Kafka and tansu alike, unlike ListOffsets), what it stored and what it dead-lettered. Every
SINK_STATUS_INTERVAL_S the loop takes a snapshot (local client calls, microseconds) and hands it to the reporter's
thread, which upserts one row on a connection of its own. The loop never waits for the database here: a report still
being written when the next is due is replaced by the newer one, and a failed write is logged and tried again with
the next report — it never stops or slows ingest.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb

from backend.config import Settings
from backend.db import connect
from backend.errors import ConfigError

log = logging.getLogger(__name__)

STALE_AFTER_INTERVALS = 3
"""Readers treat a sink whose last report is older than this many of its intervals as gone (lag unknown)."""
KEEP_ROWS = timedelta(days=1)
"""Rows of sinks gone longer than this are deleted by the next report of any sink."""
FINAL_REPORT_TIMEOUT_S = 5.0
_CONNECT_TIMEOUT_S = 5
_STATEMENT_TIMEOUT_MS = 5000

_UPSERT = """
WITH pruned AS (DELETE FROM sink_status WHERE reported_at < now() - %(keep)s AND instance_id <> %(instance_id)s)
INSERT INTO sink_status (instance_id, group_id, host, pid, member_id, started_at, reported_at, stopped_at, interval_s,
                         topic_partitions, partitions, consumed, samples_written, tokens_written, samples_per_s,
                         messages_per_s, dead_letters)
VALUES (%(instance_id)s, %(group_id)s, %(host)s, %(pid)s, %(member_id)s, %(started_at)s, now(),
        CASE WHEN %(stopped)s THEN now() END, %(interval_s)s, %(topic_partitions)s, %(partitions)s, %(consumed)s,
        %(samples_written)s, %(tokens_written)s, %(samples_per_s)s, %(messages_per_s)s, %(dead_letters)s)
ON CONFLICT (instance_id) DO UPDATE SET
    member_id = excluded.member_id, reported_at = excluded.reported_at, stopped_at = excluded.stopped_at,
    interval_s = excluded.interval_s, topic_partitions = excluded.topic_partitions, partitions = excluded.partitions,
    consumed = excluded.consumed, samples_written = excluded.samples_written, tokens_written = excluded.tokens_written,
    samples_per_s = excluded.samples_per_s, messages_per_s = excluded.messages_per_s,
    dead_letters = excluded.dead_letters
"""


@dataclass(frozen=True)
class PartitionView:
    """One assigned partition as the sink sees it. `end`: the high watermark of the last fetch response (None: no
    fetch answered yet); `lag`: end minus the committed offset (the low watermark while the group has committed
    nothing), None when either is unknown."""

    topic: str
    partition: int
    committed: int | None
    position: int | None
    end: int | None
    lag: int | None


def partition_view(topic: str, partition: int, *, committed: int | None, position: int, low: int,
                   high: int) -> PartitionView:
    """From librdkafka's numbers, where a negative offset means "not known" (or, for `committed`, "the group has
    committed nothing"); `committed` None: the sink could not learn the group's offset."""
    end = high if high >= 0 else None
    if committed is None:
        start = None
    elif committed >= 0:
        start = committed
    else:
        start = low if low >= 0 else None
    lag = max(0, end - start) if end is not None and start is not None else None
    return PartitionView(topic, partition, committed if committed is not None and committed >= 0 else None,
                         position if position >= 0 else None, end, lag)


@dataclass(frozen=True)
class Report:
    """One snapshot of a sink. `topic_partitions`: partitions per subscribed topic, as the sink's metadata says
    (readers check that running sinks hold all of them); rates are over the interval since the previous report."""

    partitions: list[PartitionView]
    topic_partitions: dict[str, int]
    member_id: str | None
    consumed: int
    samples_written: int
    tokens_written: int
    samples_per_s: float
    messages_per_s: float
    dead_letters: dict[str, int] = field(default_factory=dict)
    stopped: bool = False


@dataclass(frozen=True)
class Identity:
    """Who reports: one sink process."""

    instance_id: str
    group_id: str
    host: str
    pid: int
    started_at: datetime
    interval_s: float

    @classmethod
    def of_this_process(cls, settings: Settings) -> Identity:
        host, pid = socket.gethostname(), os.getpid()
        return cls(f"{host}-{pid}-{uuid.uuid4().hex[:6]}", settings.kafka_group_id, host, pid, datetime.now(UTC),
                   settings.sink_status_interval_s)


def record(conn: psycopg.Connection, identity: Identity, report: Report) -> None:
    """Upsert this sink's row (and delete rows of sinks gone longer than KEEP_ROWS), in one statement."""
    conn.execute(_UPSERT, {
        **asdict(identity), "keep": KEEP_ROWS, "member_id": report.member_id, "stopped": report.stopped,
        "topic_partitions": Jsonb(report.topic_partitions),
        "partitions": Jsonb([asdict(p) for p in report.partitions]), "consumed": report.consumed,
        "samples_written": report.samples_written, "tokens_written": report.tokens_written,
        "samples_per_s": report.samples_per_s, "messages_per_s": report.messages_per_s,
        "dead_letters": Jsonb(report.dead_letters),
    })


class StatusReporter:
    """Writes the reports `offer`ed to it on a daemon thread with its own connection; `close(final)` writes the last
    one (waiting at most FINAL_REPORT_TIMEOUT_S) and ends the thread."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.identity = Identity.of_this_process(settings)
        self._lock = threading.Lock()
        self._next: Report | None = None
        self._wake = threading.Event()
        self._closing = False
        self._failing = False
        self._conn: psycopg.Connection | None = None
        self._thread = threading.Thread(target=self._run, name="sink-status", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, report: Report) -> None:
        """Queue `report` for writing, replacing one not written yet; never waits."""
        with self._lock:
            self._next = report
        self._wake.set()

    def close(self, final: Report | None = None) -> None:
        if final is not None:
            self.offer(final)
        with self._lock:
            self._closing = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(FINAL_REPORT_TIMEOUT_S)
            if self._thread.is_alive():
                log.warning("the sink's last status report was not written within %.0fs", FINAL_REPORT_TIMEOUT_S)

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait()
                with self._lock:
                    report, self._next = self._next, None
                    self._wake.clear()
                if report is not None:
                    self._write(report)
                with self._lock:
                    if self._closing and self._next is None:
                        return
        finally:
            if self._conn is not None:
                self._conn.close()

    def _write(self, report: Report) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = connect(self._settings, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S,
                                     prepare_threshold=None)
                self._conn.execute(f"SET statement_timeout = {_STATEMENT_TIMEOUT_MS}")
            record(self._conn, self.identity, report)
        except (psycopg.Error, ConfigError) as exc:
            if not self._failing:
                log.warning("sink status report not written (%s); ingest goes on, trying again with the next one",
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            self._failing = True
            if self._conn is not None and (self._conn.closed or self._conn.broken):
                self._conn.close()
            return
        if self._failing:
            log.info("sink status reports are written again")
        self._failing = False
