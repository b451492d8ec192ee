"""The Pipeline page's numbers: ingest rate from the database; lag, rate and sinks from the sinks' own reports
(`sink_status`), which must agree with the broker; the broker probe on demand; the CLI's JSON."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backend.config import Settings
from backend.identity import SYSTEM
from backend.telemetry import pipeline_status
from backend.telemetry.sink.consumer import Sink
from backend.telemetry.sink.status_report import Identity, Report, partition_view, record
from tests.telemetry_sink.conftest import count_rows, produce, sample, sink_env, wait_for


def _fast_reports(settings: Settings, **more: object) -> Settings:
    return settings.model_copy(update={"sink_status_interval_s": 1.0, **more})


def _recorded(settings: Settings) -> pipeline_status.SinkStatus:
    return pipeline_status.sink_status(SYSTEM, settings=settings)


def _by_partition(partitions: list[pipeline_status.PartitionLag]) -> dict[tuple[str, int], tuple]:
    return {(p.topic, p.partition): (p.committed, p.end, p.lag) for p in partitions}


def test_ingest_rate_lag_and_cli(kafka_settings):
    now = datetime.now(UTC)
    recent = [sample(now - timedelta(seconds=s), gpu=g) for s in range(1, 31) for g in range(4)]
    produce(kafka_settings, kafka_settings.telemetry_topic, recent)
    Sink(kafka_settings, until_idle=1.0).run()
    produce(kafka_settings, kafka_settings.telemetry_topic,
            [sample(now - timedelta(seconds=s, milliseconds=500), gpu=g) for s in range(1, 6) for g in range(4)])

    rate = pipeline_status.ingest_rate(SYSTEM, minutes=5, settings=kafka_settings)
    assert rate.rows == 120 and rate.rows_per_s == 120 / 300 and sum(n for _, n in rate.per_minute) == 120

    lag = pipeline_status.consumer_lag(SYSTEM, settings=kafka_settings)
    telemetry = [p for p in lag if p.topic == kafka_settings.telemetry_topic]
    assert len(telemetry) == kafka_settings.kafka_partitions
    assert sum(p.lag for p in telemetry) == 20  # produced after the sink stopped
    assert sum(p.end for p in telemetry) == 140
    assert sum(p.committed or 0 for p in telemetry) == 120

    command = [str(Path(sys.executable).parent / "stream-platform"), "pipeline", "status", "--json"]
    out = subprocess.run(command, env=sink_env(kafka_settings), capture_output=True, text=True, timeout=60,
                         check=True)
    report = json.loads(out.stdout)
    assert report["ingest"]["rows"] == 120 and report["group"] == kafka_settings.kafka_group_id
    assert report["sinks"]["lag_total"] is None and report["live"] is None  # the sink stopped: nobody knows
    assert report["sinks"]["unknown_because"].startswith("the sink stopped")

    out = subprocess.run([*command, "--live"], env=sink_env(kafka_settings), capture_output=True, text=True,
                         timeout=60, check=True)
    live = json.loads(out.stdout)["live"]
    assert sum(p["lag"] for p in live["lag"]) == 20 and live["dlq_total"] == 0


def test_the_sinks_report_agrees_with_the_broker_and_says_unknown_when_stopped(kafka_settings, db):
    settings = _fast_reports(kafka_settings)
    now = datetime.now(UTC)
    produce(settings, settings.telemetry_topic, [sample(now - timedelta(seconds=s), gpu=g)
                                                 for s in range(1, 31) for g in range(4)])
    Sink(settings, until_idle=1.0).run()

    row = db.execute("SELECT * FROM sink_status").fetchone()
    assert row["stopped_at"] is not None and row["samples_written"] == 120 and row["consumed"] == 120
    assert row["group_id"] == settings.kafka_group_id and row["topic_partitions"] == {
        settings.telemetry_topic: 4, settings.token_usage_topic: 4}
    final = _recorded(settings)
    assert final.lag_total is None and final.unknown_because.startswith("the sink stopped")
    assert _by_partition(final.instances[0].partitions) == _by_partition(
        pipeline_status.consumer_lag(SYSTEM, settings=settings))  # its last word matched the broker

    produce(settings, settings.telemetry_topic, [sample(now - timedelta(seconds=s, milliseconds=500), gpu=g)
                                                 for s in range(1, 6) for g in range(4)])
    assert _recorded(settings).lag_total is None  # 20 behind now, but no running sink to say so: never 0

    # a sink that holds what it reads (a batch due in a minute) reports the 20 as lag, as the broker does
    holding = Sink(_fast_reports(settings, sink_batch_max_latency_ms=60_000))
    thread = threading.Thread(target=holding.run, daemon=True)
    thread.start()
    try:
        recorded = wait_for(lambda: (s := _recorded(settings)).lag_total == 20 and s, timeout=60)
        broker = pipeline_status.consumer_lag(SYSTEM, settings=settings)
        assert _by_partition(recorded.lag) == _by_partition(broker)
        assert sum(p.lag for p in broker) == 20
        assert [i.state for i in recorded.instances] == ["running", "stopped"]
        assert recorded.samples_per_s == 0 and len(recorded.running[0].partitions) == 8
    finally:
        holding.stop()
        thread.join(30)
    assert not thread.is_alive() and count_rows(db) == 140
    stopped = db.execute("SELECT partitions, stopped_at, samples_written FROM sink_status "
                         "ORDER BY started_at DESC LIMIT 1").fetchone()
    assert stopped["stopped_at"] is not None and stopped["samples_written"] == 20
    assert sum(p["lag"] for p in stopped["partitions"]) == 0
    assert sum(p.lag for p in pipeline_status.consumer_lag(SYSTEM, settings=settings)) == 0


def _report(settings: Settings, lags: dict[tuple[str, int], int], *, interval_s: float = 5.0,
            counts: int = 4) -> tuple[Identity, Report]:
    identity = Identity(f"test-{len(lags)}-{interval_s}", settings.kafka_group_id, "host-a", 42, datetime.now(UTC),
                        interval_s)
    views = [partition_view(topic, part, committed=100, position=100, low=0, high=100 + lag)
             for (topic, part), lag in sorted(lags.items())]
    topics = {settings.telemetry_topic: counts, settings.token_usage_topic: counts}
    return identity, Report(views, topics, None, 0, 0, 0, 12.5, 13.0, {"bad_json": 2})


def _every_partition(settings: Settings, lag: int = 1) -> dict[tuple[str, int], int]:
    return {(t, p): lag for t in (settings.telemetry_topic, settings.token_usage_topic) for p in range(4)}


def test_lag_is_unknown_unless_fresh_reports_hold_every_partition(kafka_settings, db):
    settings = kafka_settings
    assert _recorded(settings).unknown_because == "no sink has reported"

    record(db, *_report(settings, _every_partition(settings, lag=3)))
    fresh = _recorded(settings)
    assert fresh.lag_total == 24 and fresh.unknown_because is None
    assert (fresh.samples_per_s, fresh.dead_letters) == (12.5, {"bad_json": 2})

    db.execute("UPDATE sink_status SET reported_at = now() - interval '16 seconds'")  # three 5 s intervals ago
    stale = _recorded(settings)
    assert stale.lag_total is None and stale.samples_per_s is None and stale.running == []
    assert stale.unknown_because == "the sink last reported 16 s ago"

    db.execute("DELETE FROM sink_status")
    half = {k: v for k, v in _every_partition(settings).items() if k[1] < 2}
    record(db, *_report(settings, half))
    partial = _recorded(settings)
    assert partial.lag_total is None
    assert partial.unknown_because == f"{settings.telemetry_topic}[2, 3] held by no running sink"

    db.execute("UPDATE sink_status SET reported_at = now() - interval '2 days'")
    record(db, *_report(settings, _every_partition(settings), interval_s=1.0))  # prunes the day-old row
    assert [i.instance_id for i in _recorded(settings).instances] == ["test-8-1.0"]

    unfetched = _report(settings, _every_partition(settings))
    views = [*unfetched[1].partitions[1:], partition_view(settings.telemetry_topic, 0, committed=-1001, position=-1001,
                                                          low=-1001, high=-1001)]
    record(db, unfetched[0], Report(views, unfetched[1].topic_partitions, None, 0, 0, 0, 0, 0))
    assert _recorded(settings).unknown_because == f"no fetch answered yet for {settings.telemetry_topic}[0]"


def test_a_failing_status_write_never_stops_ingest(kafka_settings, db, caplog):
    db.execute("DROP TABLE sink_status")
    produce(kafka_settings, kafka_settings.telemetry_topic,
            [sample(datetime.now(UTC) - timedelta(seconds=s)) for s in range(1, 51)])
    with caplog.at_level(logging.WARNING):
        summary = Sink(_fast_reports(kafka_settings), until_idle=2.5).run()
    assert summary.metrics_written == 50 and count_rows(db) == 50
    assert "sink status report not written" in caplog.text


@pytest.mark.parametrize(("committed", "low", "high", "lag"), [
    (120, 0, 140, 20), (-1001, 5, 40, 35), (None, 0, 40, None), (10, 0, -1001, None)])
def test_partition_view_lag(committed, low, high, lag):
    assert partition_view("t", 0, committed=committed, position=-1001, low=low, high=high).lag == lag
