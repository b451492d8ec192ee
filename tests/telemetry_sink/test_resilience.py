"""Crashes, restarts and company: every sample stored exactly once, offsets never ahead of the database."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from datetime import timedelta

import psycopg

from backend.config import Settings
from backend.db.migrate import migrate
from backend.embedded.postgres import EmbeddedPostgres
from backend.identity import SYSTEM
from backend.messaging.kafka import ensure_topics, make_producer
from backend.telemetry import pipeline_status
from backend.telemetry.sink.rollup_worker import materialize
from tests.telemetry_sink.conftest import (
    Output,
    assert_rollups_exact,
    base_time,
    count_rows,
    produce,
    sample,
    start_sink,
    stored_once,
    wait_for,
)

GPUS = 50


class Stream(threading.Thread):
    """Produces `total` unique samples (GPUS GPUs, one per second each) at about `rate` per second."""

    def __init__(self, settings: Settings, total: int, rate: int) -> None:
        super().__init__(daemon=True)
        self.settings, self.total, self.rate = settings, total, rate
        self.t0 = base_time()

    def run(self) -> None:
        ensure_topics([self.settings.telemetry_topic, self.settings.token_usage_topic, self.settings.dlq_topic],
                      self.settings)
        producer = make_producer(self.settings)
        chunk = max(1, self.rate // 10)
        for start in range(0, self.total, chunk):
            began = time.monotonic()
            produce(self.settings, self.settings.telemetry_topic,
                    [sample(self.t0 + timedelta(seconds=i // GPUS), gpu=i % GPUS)
                     for i in range(start, min(start + chunk, self.total))], producer=producer)
            time.sleep(max(0.0, 0.1 - (time.monotonic() - began)))


def _exactly_once(db, total: int, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    assert stored_once(db) == {"rows": total, "1m": total, "1h": total}
    assert count_rows(db, "gpus") == GPUS
    _rollups_exact(db, settings)


def _rollups_exact(db, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    """The rollups equal a recomputation from raw rows as readers see them (materialized or not), and again once
    the worker has caught up on every pending minute."""
    assert_rollups_exact(db)
    materialize(settings)
    assert_rollups_exact(db, materialized=True)


def _committed(settings: Settings) -> int:
    lag = pipeline_status.consumer_lag(SYSTEM, settings=settings)
    return sum(p.committed or 0 for p in lag if p.topic == settings.telemetry_topic)


def test_kill9_then_sigterm_then_restart_stores_everything_once(kafka_settings, db, sinks):
    total = 24000
    stream = Stream(kafka_settings, total, rate=4000)
    stream.start()
    sinks.append(start_sink(kafka_settings, SINK_BATCH_SIZE="300"))
    wait_for(lambda: count_rows(db) > 2000, timeout=60)
    os.kill(sinks[-1].pid, signal.SIGKILL)
    sinks[-1].wait()
    killed_at = count_rows(db)
    assert killed_at < total

    sinks.append(start_sink(kafka_settings, SINK_BATCH_SIZE="300"))
    wait_for(lambda: count_rows(db) > killed_at + 2000, timeout=60)
    sinks[-1].send_signal(signal.SIGTERM)
    output, _ = sinks[-1].communicate(timeout=30)
    assert sinks[-1].returncode == 0, output
    consumed, stored, duplicates = map(int, re.search(
        r"consumed (\d+), stored (\d+) samples and 0 token-usage rows, (\d+) already stored", output).groups())
    assert consumed == stored + duplicates > 0  # it finished the batch in hand: everything it read is stored
    assert _committed(kafka_settings) <= count_rows(db)  # offsets never ahead of the database

    stream.join(60)
    sinks.append(start_sink(kafka_settings, "--until-idle", "2", full_cli=True))
    output, _ = sinks[-1].communicate(timeout=90)
    assert sinks[-1].returncode == 0, output
    _exactly_once(db, total, kafka_settings)
    assert _committed(kafka_settings) == total


def test_postgres_restart_mid_ingest_loses_nothing(kafka_settings, sinks, tmp_path):
    server = EmbeddedPostgres(tmp_path / "pg")  # keeps its data across the restart
    admin_url = server.start()
    try:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE sinkdb")
        own = kafka_settings.model_copy(update={"database_url": server.url_for("sinkdb")})
        migrate(own.model_copy(update={"db_profile": "postgres"}))
        total = 12000
        stream = Stream(own, total, rate=3000)
        stream.start()
        sinks.append(start_sink(own, "--until-idle", "3", SINK_BATCH_SIZE="500"))
        with psycopg.connect(own.database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
            wait_for(lambda: count_rows(db) > 1000, timeout=60)
        server.halt()
        time.sleep(2.0)  # the sink keeps consuming into its batch and backs off on the dead database
        server.resume()
        stream.join(60)
        output, _ = sinks[-1].communicate(timeout=90)
        assert sinks[-1].returncode == 0, output
        assert "database write failed" in output  # the outage really hit a batch, which was then retried
        with psycopg.connect(own.database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as db:
            _exactly_once(db, total, own)
        assert _committed(own) == total
    finally:
        server.stop()


def test_two_sinks_in_one_group_share_the_work(kafka_settings, db, sinks):
    produce(kafka_settings, kafka_settings.telemetry_topic, [sample(base_time(), gpu=0)])  # topics exist
    sinks += [start_sink(kafka_settings, "--until-idle", "5", SINK_BATCH_SIZE="200") for _ in range(2)]
    outputs = [Output(process) for process in sinks]
    wait_for(lambda: all("partitions assigned" in out.text() for out in outputs), timeout=60)
    total = 4000
    stream = Stream(kafka_settings, total, rate=1000)
    stream.start()
    stream.join(60)
    for process, out in zip(sinks, outputs, strict=True):
        assert process.wait(90) == 0, out.text()
        out.join(5)
    consumed = [int(re.search(r"consumed (\d+)", out.text())[1]) for out in outputs]
    assert all(n > 0 for n in consumed) and sum(consumed) >= total  # both worked; replays may add a few
    assert count_rows(db) == total  # the first sample shares its key and time with sample 0 of the stream
    assert db.execute("SELECT sum(samples) AS s FROM gpu_metrics_1m").fetchone()["s"] == total
    _rollups_exact(db, kafka_settings)
