"""Rollups off the hot path (postgres profile): the writer's invalidation log, the rollup worker, exact views."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from backend.db import connect
from backend.embedded.ports import free_port
from backend.telemetry.sink.batch import Batch, add_sample
from backend.telemetry.sink.consumer import Sink
from backend.telemetry.sink.metrics import SinkMetrics
from backend.telemetry.sink.rollup_worker import _WORKER_LOCK, RollupWorker, materialize, run_pass
from backend.telemetry.sink.rollups import lock_shared
from backend.telemetry.sink.validate import TimeWindow
from backend.telemetry.sink.writer import PostgresWriter
from tests.telemetry_sink.conftest import (
    assert_rollups_exact,
    base_time,
    count_rows,
    produce,
    sample,
    wait_for,
)

NOW = timedelta(0)


def _batch(times: list[datetime], gpus: range = range(3), **metrics: float) -> Batch:
    window = TimeWindow(datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(minutes=5))
    batch = Batch()
    for ts in times:
        for gpu in gpus:
            add_sample(batch, orjson.dumps(sample(ts, gpu=gpu, gpu_temp=30 + ts.second + gpu, **metrics)), window)
    return batch


def _every(start: datetime, seconds: int, count: int) -> list[datetime]:
    return [start + timedelta(seconds=seconds * i) for i in range(count)]


def _pending(db, level: str = "1m") -> list[datetime]:  # type: ignore[no-untyped-def]
    return [r["bucket"] for r in db.execute(f"SELECT bucket FROM gpu_metrics_{level}_pending ORDER BY 1")]


def test_writes_log_their_minutes_and_the_worker_materializes_them_exactly(settings, db):
    t0 = base_time()
    writer = PostgresWriter(settings)
    try:  # 70 minutes, two hours, in three batches
        for start in (t0 - timedelta(minutes=10), t0 + timedelta(minutes=10), t0 + timedelta(minutes=35)):
            writer.write(_batch(_every(start, 20, 75)))
    finally:
        writer.close()
    assert len(_pending(db)) == 70 and _pending(db, "1h") == [t0 - timedelta(hours=1), t0]
    assert count_rows(db, "gpu_metrics_1m_state") == 0
    assert_rollups_exact(db)  # nothing materialized yet: the views aggregate the pending minutes from raw rows

    report = materialize(settings)

    assert (report.minutes, report.hours, report.pending, report.skipped) == (70, 2, 0, False)
    # these minutes ended two hours ago but were written just now: the wait counts from the write
    assert len(report.delays_s) == 70 and 0 < max(report.delays_s) < 60
    assert count_rows(db, "gpu_metrics_1m_state") == 70 * 3 and count_rows(db, "gpu_metrics_1h_state") == 2 * 3
    assert_rollups_exact(db, materialized=True)


def test_late_rows_invalidate_their_minute_and_a_replay_logs_nothing(settings, db):
    t0 = base_time()
    writer = PostgresWriter(settings)
    try:
        first = _batch(_every(t0, 10, 12))
        writer.write(first)
        materialize(settings)
        replay = writer.write(first)
        assert (replay.metrics_inserted, replay.metrics_duplicates) == (0, 36)
        assert _pending(db) == []  # nothing inserted, nothing to recompute

        late = writer.write(_batch([t0 + timedelta(seconds=15), t0 + timedelta(seconds=25)], power_usage=999.0))
        assert (late.metrics_inserted, late.metrics_duplicates) == (6, 0)
        assert _pending(db) == [t0] and _pending(db, "1h") == [t0]
        stale = db.execute("SELECT count(*) AS n FROM gpu_metrics_1m_state WHERE bucket = %s", (t0,)).fetchone()
        assert stale["n"] == 0  # the late write dropped the minute's materialized rows
        assert_rollups_exact(db)  # the late minute is read from raw rows until the worker catches up
        minute = db.execute("SELECT samples, power_usage_max FROM gpu_metrics_1m WHERE bucket = %s AND gpu_uuid = "
                            "(SELECT min(gpu_uuid) FROM gpus)", (t0,)).fetchone()
        assert (minute["samples"], minute["power_usage_max"]) == (8, 999.0)

        again = materialize(settings)
        assert (again.minutes, again.hours) == (1, 1)
        assert_rollups_exact(db, materialized=True)
    finally:
        writer.close()


def test_writer_copies_straight_in_and_falls_back_to_the_stage_for_replays(settings, db):
    t0 = base_time()
    writer = PostgresWriter(settings)
    try:
        assert writer.write(_batch(_every(t0, 10, 6))).metrics_inserted == 18
        overlap = writer.write(_batch(_every(t0 + timedelta(seconds=30), 10, 6)))  # 3 stored, 3 new per GPU
        assert (overlap.metrics_inserted, overlap.metrics_duplicates) == (9, 9)
        again = writer.write(_batch(_every(t0 + timedelta(seconds=30), 10, 6)))
        assert (again.metrics_inserted, again.metrics_duplicates) == (0, 18)
        fresh = writer.write(_batch(_every(t0 + timedelta(minutes=5), 10, 6)))
        assert (fresh.metrics_inserted, fresh.metrics_duplicates) == (18, 0)
        twice = _batch([t0 + timedelta(minutes=9)] * 2)  # a duplicate inside one batch (a producer retry)
        assert (writer.write(twice).metrics_inserted, count_rows(db)) == (3, 48)
    finally:
        writer.close()
    assert_rollups_exact(db)
    materialize(settings)
    assert_rollups_exact(db, materialized=True)


def test_the_worker_skips_buckets_a_sink_is_writing_and_does_them_next_pass(settings, db):
    t0 = base_time()
    writer = PostgresWriter(settings)
    try:
        writer.write(_batch(_every(t0, 10, 6)))
    finally:
        writer.close()
    with connect(settings) as sink:  # a sink's transaction holds the bucket locks while it writes
        sink.execute(f"WITH mins AS (SELECT %s::timestamptz AS b) {lock_shared('mins')}", (t0,))
        with connect(settings, autocommit=True) as worker:
            busy = run_pass(worker, NOW)
        assert (busy.minutes, busy.hours, busy.busy) == (0, 0, 2)
        assert_rollups_exact(db)
    done = materialize(settings)
    assert (done.minutes, done.hours, done.busy) == (1, 1, 0)
    assert_rollups_exact(db, materialized=True)


def test_open_minutes_wait_and_one_worker_runs_at_a_time(settings, db):
    if datetime.now(UTC).second >= 55:  # keep the current minute open for the whole test
        time.sleep(61 - datetime.now(UTC).second)
    now = datetime.now(UTC).replace(microsecond=0)
    writer = PostgresWriter(settings)
    try:
        writer.write(_batch([now - timedelta(minutes=3), now]))
    finally:
        writer.close()
    report = materialize(settings, due_after=NOW)
    assert (report.minutes, report.pending) == (1, 1)  # the current minute is not complete yet
    assert _pending(db) == [now.replace(second=0)]
    assert_rollups_exact(db)

    with connect(settings, autocommit=True) as other, connect(settings, autocommit=True) as worker:
        other.execute("SELECT pg_advisory_lock(%s)", (_WORKER_LOCK,))
        assert run_pass(worker, NOW).skipped
        other.execute("SELECT pg_advisory_unlock(%s)", (_WORKER_LOCK,))
        assert not run_pass(worker, NOW).skipped


def test_the_sink_runs_the_worker_and_reports_freshness(kafka_settings, db, monkeypatch):
    port = free_port()
    monkeypatch.setattr(kafka_settings, "sink_metrics_port", port)
    monkeypatch.setattr(kafka_settings, "rollup_max_delay_s", 2.0)  # a pass every second
    t0 = base_time()
    produce(kafka_settings, kafka_settings.telemetry_topic,
            [sample(t0 + timedelta(seconds=5 * i), gpu=g) for i in range(36) for g in range(2)])

    summary = Sink(kafka_settings, until_idle=3.0).run()

    assert summary.metrics_written == 72
    assert_rollups_exact(db, materialized=True)
    scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    value = {name: float(re.search(rf"^{name} (\S+)$", scraped, re.M)[1]) for name in (
        "sink_rollup_minutes_total", "sink_rollup_delay_seconds_count", "sink_rollup_pending_minutes")}
    assert value["sink_rollup_minutes_total"] >= 3  # a minute may be done twice if its rows came in two passes
    assert value["sink_rollup_delay_seconds_count"] == value["sink_rollup_minutes_total"]
    assert value["sink_rollup_pending_minutes"] == 0


def test_rollup_cli_materializes_and_says_what_it_did(settings, db):
    writer = PostgresWriter(settings)
    try:
        writer.write(_batch(_every(base_time(), 30, 4)))
    finally:
        writer.close()
    command = [str(Path(sys.executable).parent / "stream-platform"), "pipeline", "rollup"]
    env = dict(os.environ, DATABASE_URL=settings.database_url, SECRETS_ENV_FILE="/nonexistent/secrets.env")
    out = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, timeout=60, check=True)
    report = json.loads(out.stdout)
    assert (report["minutes"], report["hours"], report["pending"]) == (2, 1, 0)
    assert_rollups_exact(db, materialized=True)
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert "materialized 0 minutes and 0 hours; 0 minutes still pending" in again.stdout


def test_a_failing_worker_counts_its_failures_and_keeps_trying(settings):
    unreachable = settings.model_copy(update={"database_url": "postgresql://nobody@127.0.0.1:1/none",
                                              "rollup_max_delay_s": 2.0})
    metrics = SinkMetrics()
    worker = RollupWorker(unreachable, metrics, "postgres")
    worker.start()
    try:
        wait_for(lambda: (metrics.registry.get_sample_value("sink_rollup_failures_total") or 0) >= 2, timeout=30)
    finally:
        worker.stop()
