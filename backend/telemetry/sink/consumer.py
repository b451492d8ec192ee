"""The sink loop: consume → validate → dead-letter rejects → store → commit offsets, batch by batch.

Batches are pipelined: while writer threads store batches N and N+1, each in its own transaction on its own
connection (`SINK_WRITERS`, default 2: one PostgreSQL backend per write, so the database uses more than one
core), the loop consumes and validates the next batch (the database waits release the GIL). Batches are finished
oldest first, so offsets are committed in order, each only after its database commit (and those of the batches
before it) and after the broker has acknowledged its dead letters: a crash at any point replays (harmlessly,
thanks to ON CONFLICT DO NOTHING) instead of losing data. Two writes in flight meet on the same rows only when
the topic holds a sample twice; the later one then waits for the earlier and inserts nothing twice. A database or
dead-letter outage is waited out with back-off while the consumer stays in its group with paused partitions; a
batch the database refuses for its content is split so that only the offending messages go to the dead-letter
topic. A rollup worker thread (`rollup_worker.py`) materializes the 1m/1h rollups from the invalidation log the
writers keep (postgres profile) and keeps the precomputed GPU-minutes current (both profiles), on its own
connection, outside the batches' transactions. Every SINK_STATUS_INTERVAL_S the loop hands a snapshot of its
partitions, offsets, lag and rates to the status reporter (`status_report.py`), which records it in the database
on a thread of its own: the console reads it there instead of asking the broker.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import psycopg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import Counter

from backend.config import Settings, get_settings
from backend.errors import Unavailable
from backend.messaging.kafka import ensure_topics, make_consumer
from backend.telemetry.sink.batch import Batch, build_batch
from backend.telemetry.sink.dlq import DeadLetters, make_dead_letters
from backend.telemetry.sink.metrics import SinkMetrics
from backend.telemetry.sink.rollup_worker import RollupWorker
from backend.telemetry.sink.status_report import Report, StatusReporter, partition_view
from backend.telemetry.sink.validate import Rejected, TimeWindow
from backend.telemetry.sink.writer import PostgresWriter, WriteResult

log = logging.getLogger(__name__)

FUTURE_ALLOWANCE = timedelta(minutes=5)
_TRANSIENT = (psycopg.OperationalError, psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected,
              psycopg.errors.CheckViolation)
_CONTENT_ERRORS = (psycopg.errors.DataError, psycopg.errors.IntegrityError)  # this data, not the database
MAX_BACKOFF_S = 5.0
STOP_GRACE_S = 15.0
INFLIGHT_POLL_S = 0.005  # how often the loop looks whether the oldest write is done while messages are scarce
COMMITTED_TIMEOUT_S = 5.0  # the group's offsets, asked once per assignment for the status report
T = TypeVar("T")


@dataclass
class SinkSummary:
    """What one run did; returned by `Sink.run()` and printed by the CLI."""

    consumed: int = 0
    metrics_written: int = 0
    tokens_written: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    batches: int = 0
    dlq_reasons: dict[str, int] = field(default_factory=dict)
    first_message_at: float | None = None  # time.monotonic() of the first message, and of the last commit
    last_commit_at: float | None = None

    @property
    def messages_per_s(self) -> float:
        """Throughput while working: first message to last commit (group joins and idle waits excluded)."""
        if self.first_message_at is None or self.last_commit_at is None or self.last_commit_at <= self.first_message_at:
            return 0.0
        return self.consumed / (self.last_commit_at - self.first_message_at)


@dataclass
class _InFlight:
    """A batch handed to a writer thread, with what finishing it needs: the writer (its connection) stays this
    batch's until it is finished, so retries and isolation run on it."""

    messages: list[Message]
    batch: Batch
    window: TimeWindow
    started: float
    writer: PostgresWriter
    write: Future[WriteResult]


class Sink:
    """One member of the sink consumer group. `run()` returns when stopped (SIGTERM/SIGINT or `stop()`) or,
    with `until_idle`, after that many seconds without a new message. `dead_letter_settings`: where dead letters
    go (default: `settings`; tests point them at a broker of their own)."""

    def __init__(self, settings: Settings | None = None, *, until_idle: float | None = None,
                 use_copy: bool = True, metrics: SinkMetrics | None = None,
                 dead_letter_settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._dead_letter_settings = dead_letter_settings or self.settings
        self.until_idle = until_idle
        self.metrics = metrics or SinkMetrics()
        self.summary = SinkSummary()
        self._writers = [PostgresWriter(self.settings, use_copy=use_copy) for _ in range(self.settings.sink_writers)]
        self._write_threads = ThreadPoolExecutor(max_workers=len(self._writers), thread_name_prefix="sink-writer")
        self._rollups: RollupWorker | None = None
        self._inflight: deque[_InFlight] = deque()  # oldest first
        self._stop = threading.Event()
        self._pending: list[Message] = []
        self._consumer: Consumer | None = None
        self._dlq: DeadLetters | None = None
        self._flushing = False
        self._active_since: float | None = None  # when partitions were last assigned: idle time counts from there
        self._status = StatusReporter(self.settings)
        self._next_report = 0.0  # time.monotonic() when the next status report is due
        self._last_report = (time.monotonic(), 0, 0)  # when, samples written, messages consumed: for the rates
        self._committed: dict[tuple[str, int], int] = {}  # the group's offsets of our partitions (-1001: none yet)
        self._topic_partitions: dict[str, int] = {}  # as the broker said at start (readers check coverage)

    def stop(self) -> None:
        """Finish the current batch, commit it and return from `run()`."""
        self._stop.set()

    def run(self) -> SinkSummary:
        s = self.settings
        topics = [s.telemetry_topic, s.token_usage_topic]
        try:
            counts = ensure_topics([*topics, s.dlq_topic], s)
        except KafkaException as exc:
            raise Unavailable(f"Kafka at {s.kafka_bootstrap_servers} unreachable: {exc.args[0].str()}") from None
        self._topic_partitions = {topic: counts[topic] for topic in topics}
        if s.sink_metrics_port:
            self.metrics.serve(s.sink_metrics_port)
        self._install_signal_handlers()
        self._dlq = make_dead_letters(self._dead_letter_settings, wait=self._keep_membership)
        # the broker may hold a fetch this long waiting for data: never longer than a batch may wait
        wait_ms = max(10, min(500, s.sink_batch_max_latency_ms))
        self._consumer = make_consumer(s.kafka_group_id, s, **{"fetch.wait.max.ms": wait_ms})
        self._consumer.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        log.info("sink consuming %s as group %s", ", ".join(topics), s.kafka_group_id)
        today = datetime.now(UTC).date()
        for writer in self._writers:  # during the group join
            self._write_threads.submit(writer.warm_up, {today, today + timedelta(days=1)})
        self._status.start()
        # the first report once the writer has connected (a one-connection test server must not see ours first)
        self._next_report = time.monotonic() + s.sink_status_interval_s
        final: Report | None = None
        try:
            self._loop()
            self._flush()
            self._finish_all()
            final = self._snapshot(time.monotonic(), stopped=True)
        finally:
            self._write_threads.shutdown(wait=True)  # never close a connection under a running write
            if self._rollups is not None:
                self._rollups.stop()
            self._consumer.close()
            for writer in self._writers:
                writer.close()
            self._status.close(final)
        log.info("sink stopped: %s", self.summary)
        return self.summary

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self._stop.set())

    def _loop(self) -> None:
        size, latency = self.settings.sink_batch_size, self.settings.sink_batch_max_latency_ms / 1000
        batch_started = time.monotonic()
        while not self._stop.is_set():
            profile = self._writers[0].profile  # known once the writer connected
            if self._rollups is None and profile is not None:
                self._rollups = RollupWorker(self.settings, self.metrics, profile)
                self._rollups.start()
            wait = max(0.0, batch_started + latency - time.monotonic()) if self._pending else 0.2
            if self._inflight:
                wait = min(wait, INFLIGHT_POLL_S)
            wait = min(wait, max(0.0, self._next_report - time.monotonic()))
            messages = self._consumer.consume(num_messages=max(1, size - len(self._pending)), timeout=wait)
            now = time.monotonic()
            self._report_if_due(now)
            for message in messages:
                if message.error() is None:
                    if not self._pending:
                        batch_started = now
                    self._pending.append(message)
                elif message.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", message.error())
            if messages:
                self.summary.first_message_at = self.summary.first_message_at or now
                if self._active_since is not None:
                    self._active_since = now
            while self._inflight and self._inflight[0].write.done():
                self._finish()
            if self._pending and (len(self._pending) >= size or now >= batch_started + latency):
                self._flush()
            elif self._idle(now):
                return

    def _idle(self, now: float) -> bool:
        """`until_idle` seconds with partitions assigned and no new message (joining a group takes a while)."""
        return (self.until_idle is not None and not self._pending and not self._inflight
                and self._active_since is not None
                and now - self._active_since >= self.until_idle)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("partitions assigned: %s", ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "none")
        self._active_since = time.monotonic()
        self._committed = self._group_offsets(consumer, partitions)

    @staticmethod
    def _group_offsets(consumer: Consumer, partitions: list[TopicPartition]) -> dict[tuple[str, int], int]:
        """The group's committed offsets of newly assigned partitions (one round trip, under a millisecond), so the
        status report knows the lag before our first commit; unknown (the report says so) if the broker does not
        answer."""
        if not partitions:
            return {}
        try:
            return {(tp.topic, tp.partition): tp.offset
                    for tp in consumer.committed(partitions, timeout=COMMITTED_TIMEOUT_S)}
        except KafkaException as exc:
            log.warning("group offsets unavailable (%s): the status report shows lag as unknown until the next "
                        "commit", exc)
            return {}

    def _on_revoke(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        """Store and commit what we hold before the partitions move to another member (unless a flush is already
        under way: its commit may then be refused, and the new owner replays harmlessly)."""
        self._active_since = None
        if not self._flushing:
            self._flush()
            self._finish_all()

    def _flush(self) -> None:
        """Validate the pending messages, dead-letter the rejects, finish the oldest batch in flight if every
        writer is busy, then hand this one to a free writer."""
        if not self._pending:
            return
        started = time.monotonic()
        messages, self._pending = self._pending, []
        self._flushing = True
        try:
            window = TimeWindow(
                oldest=datetime.now(UTC) - timedelta(days=self.settings.retention_raw_days),
                latest=datetime.now(UTC) + FUTURE_ALLOWANCE,
            )
            batch = build_batch(messages, self.settings.telemetry_topic, window)
            for message, rejected in batch.rejected:
                self._dead_letter(message, rejected)
            if len(self._inflight) == len(self._writers):
                self._finish()
            busy = [inflight.writer for inflight in self._inflight]
            writer = next(w for w in self._writers if w not in busy)
            write = self._write_threads.submit(writer.write, batch)
            self._inflight.append(_InFlight(messages, batch, window, started, writer, write))
        finally:
            self._flushing = False

    def _finish_all(self) -> None:
        while self._inflight:
            self._finish()

    def _finish(self) -> None:
        """Wait for the oldest batch in flight to be stored (retrying or isolating here if its writer thread
        failed), then acknowledge its dead letters and commit its offsets."""
        if not self._inflight:
            return
        inflight = self._inflight.popleft()
        self._flushing = True
        try:
            self._store(inflight)
            self._dead_letter_flush()
            self._commit(inflight.batch.offsets)
        finally:
            self._flushing = False
        self.summary.last_commit_at = time.monotonic()
        self._observe_lag(inflight.batch)
        self._account_time(inflight.messages, self.summary.last_commit_at - inflight.started)
        if self._active_since is not None:
            self._active_since = time.monotonic()  # a long flush (database outage) is not idleness

    def _store(self, inflight: _InFlight) -> None:
        """The writer thread's result, with retries on transient errors; a batch refused for its content is split
        message by message."""
        try:
            self._count(self._write_with_retry(inflight.writer, inflight.batch, inflight.write))
        except _CONTENT_ERRORS as exc:
            log.warning("batch refused by the database (%s): isolating the offending messages", exc.sqlstate)
            self._isolate(inflight.writer, inflight.messages, inflight.batch, inflight.window)

    def _isolate(self, writer: PostgresWriter, messages: list[Message], batch: Batch, window: TimeWindow) -> None:
        rejected_ids = {id(m) for m, _ in batch.rejected}
        for message in messages:
            if id(message) in rejected_ids:
                continue
            single = build_batch([message], self.settings.telemetry_topic, window)
            try:
                self._count(self._write_with_retry(writer, single))
            except _CONTENT_ERRORS as exc:
                reason = Rejected("db_rejected", f"{exc.sqlstate}: {str(exc).splitlines()[0][:300]}")
                batch.rejected.append((message, reason))
                self._dead_letter(message, reason)

    def _write_with_retry(self, writer: PostgresWriter, batch: Batch,
                          first_attempt: Future[WriteResult] | None = None) -> WriteResult:
        """Store the batch with `writer`, retrying transient failures (database down, deadlock). `first_attempt`:
        the writer thread's try, whose failure counts as the first one."""
        attempts = [first_attempt.result] if first_attempt is not None else []

        def attempt() -> WriteResult:
            return attempts.pop()() if attempts else writer.write(batch)

        return self._retry(attempt, _TRANSIENT, self.metrics.db_retries, "database write failed", 0.1,
                           "an unwritten batch: the database stayed unreachable")

    def _retry(self, attempt: Callable[[], T], transient: tuple[type[Exception], ...], retries: Counter,
               failure: str, delay: float, unfinished: str) -> T:
        """Call `attempt` until it succeeds, backing off (up to MAX_BACKOFF_S) while the group keeps us: never
        skip, never lose. After a stop request the retries end after a grace period and the process exits
        without committing."""
        stop_deadline = None
        while True:
            try:
                return attempt()
            except transient as exc:
                retries.inc()
                log.warning("%s (%s); retrying in %.1fs", failure, str(exc).splitlines()[0], delay)
            if self._stop.is_set():
                stop_deadline = stop_deadline or time.monotonic() + STOP_GRACE_S
                if time.monotonic() > stop_deadline:
                    raise Unavailable(f"stopping with {unfinished} (offsets not committed, nothing lost)")
            self._keep_membership(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    def _keep_membership(self, seconds: float) -> None:
        """Wait while polling with paused partitions, so the group does not evict us during an outage."""
        assignment = self._consumer.assignment()
        self._consumer.pause(assignment)
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                message = self._consumer.poll(min(0.2, max(0.0, deadline - time.monotonic())))
                if message is not None and message.error() is None:
                    self._pending.append(message)  # fetched before the pause: keep it for the next batch
                self._report_if_due(time.monotonic())  # an outage shows in the console as lag that grows
        finally:
            self._consumer.resume(self._consumer.assignment())

    def _dead_letter(self, message: Message, rejected: Rejected) -> None:
        reason = self._dlq.send(message, rejected)
        self.metrics.dlq.labels(reason).inc()
        self.summary.dead_lettered += 1
        self.summary.dlq_reasons[reason] = self.summary.dlq_reasons.get(reason, 0) + 1

    def _dead_letter_flush(self) -> None:
        """Wait until the broker has acknowledged every dead letter; until then no offset may be committed."""
        self._retry(self._dlq.flush, (Unavailable,), self.metrics.dlq_retries, "dead letters not acknowledged", 0.5,
                    "unacknowledged dead letters: the dead-letter topic stayed unavailable")

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        """Commit the next offsets; a commit refused after a rebalance only means a harmless replay."""
        partitions = [TopicPartition(topic, part, offset) for (topic, part), offset in offsets.items()]
        try:
            self._consumer.commit(offsets=partitions, asynchronous=False)
        except KafkaException as exc:
            log.warning("offset commit refused (%s): the new owner will replay these messages idempotently", exc)
            return
        self._committed.update(offsets)

    def _count(self, result: WriteResult) -> None:
        self.metrics.written.labels("gpu_metrics").inc(result.metrics_inserted)
        self.metrics.written.labels("token_usage").inc(result.tokens_inserted)
        self.metrics.duplicates.labels("gpu_metrics").inc(result.metrics_duplicates)
        self.metrics.duplicates.labels("token_usage").inc(result.tokens_duplicates)
        self.summary.metrics_written += result.metrics_inserted
        self.summary.tokens_written += result.tokens_inserted
        self.summary.duplicates += result.metrics_duplicates + result.tokens_duplicates

    def _account_time(self, messages: list[Message], seconds: float) -> None:
        self.summary.consumed += len(messages)
        self.summary.batches += 1
        for topic in {m.topic() for m in messages}:
            self.metrics.consumed.labels(topic).inc(sum(1 for m in messages if m.topic() == topic))
        self.metrics.batch_seconds.observe(seconds)
        self.metrics.batch_size.observe(len(messages))

    def _report_if_due(self, now: float) -> None:
        if now >= self._next_report:
            self._next_report = now + self.settings.sink_status_interval_s
            self._status.offer(self._snapshot(now))

    def _snapshot(self, now: float, *, stopped: bool = False) -> Report:
        """Where this sink stands, from the client's own state (no broker round trip): assigned partitions, the
        offsets committed, positions, the watermarks of the last fetch responses; rates since the last snapshot."""
        assignment = self._consumer.assignment()
        positions = {(tp.topic, tp.partition): tp.offset for tp in self._consumer.position(assignment)}
        views = []
        for tp in sorted(assignment, key=lambda tp: (tp.topic, tp.partition)):
            key = (tp.topic, tp.partition)
            low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            views.append(partition_view(tp.topic, tp.partition, committed=self._committed.get(key),
                                        position=positions.get(key, -1), low=low, high=high))
        then, written, consumed = self._last_report
        seconds = max(now - then, 1e-3)
        s = self.summary
        self._last_report = (now, s.metrics_written, s.consumed)
        try:
            member_id = self._consumer.memberid() or None
        except (RuntimeError, KafkaException):
            member_id = None
        return Report(views, dict(self._topic_partitions), member_id, s.consumed, s.metrics_written,
                      s.tokens_written, (s.metrics_written - written) / seconds, (s.consumed - consumed) / seconds,
                      dict(s.dlq_reasons), stopped)

    def _observe_lag(self, batch: Batch) -> None:
        for (topic, part), next_offset in batch.offsets.items():
            _low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, part), cached=True)
            if high >= 0:
                self.metrics.lag.labels(topic, str(part)).set(max(0, high - next_offset))
