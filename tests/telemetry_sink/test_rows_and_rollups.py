"""Samples and token usage through the real broker into PostgreSQL: rows, inventory, rollups, replays."""

from __future__ import annotations

import urllib.request
from datetime import timedelta

import pytest

from backend.embedded.ports import free_port
from backend.telemetry.fields import FIELDS
from backend.telemetry.sink.consumer import Sink
from tests.telemetry_sink.conftest import (
    assert_rollups_exact,
    base_time,
    count_rows,
    produce,
    sample,
    token_usage,
    uuid_for,
)


def _fleet(t0):  # type: ignore[no-untyped-def]
    """2 GPUs × 90 samples, one every 2 s from t0 (minutes 0 and 1 full, minute 2 half)."""
    out = []
    for gpu in (0, 1):
        for i in range(90):
            out.append(sample(t0 + timedelta(seconds=2 * i), gpu=gpu, gpu_temp=40 + i + gpu,
                              power_usage=100.0 * (gpu + 1), ecc_sbe_vol_total=i, fan_speed=33.0 + gpu,
                              clocks_event_reasons=(1 if i == 3 else 0) | (0x40 if i == 70 else 0)))
    return out


def test_rows_inventory_rollups_and_metrics(kafka_settings, db, monkeypatch):
    port = free_port()
    monkeypatch.setattr(kafka_settings, "sink_metrics_port", port)
    t0 = base_time()
    produce(kafka_settings, kafka_settings.telemetry_topic, _fleet(t0))
    produce(kafka_settings, kafka_settings.token_usage_topic,
            [token_usage(t0 + timedelta(seconds=10 * i), gpu=0, requests=i) for i in range(6)])

    summary = Sink(kafka_settings, until_idle=1.5).run()

    assert summary.consumed == 186 and summary.metrics_written == 180 and summary.tokens_written == 6
    assert summary.dead_lettered == 0 and summary.duplicates == 0
    assert count_rows(db) == 180
    row = db.execute("SELECT * FROM gpu_metrics WHERE gpu_uuid = %s AND time = %s",
                     (uuid_for(1), t0 + timedelta(seconds=20))).fetchone()
    assert row["host"] == "host-a" and row["gpu_index"] == 1
    assert row["gpu_temp"] == 51.0 and row["power_usage"] == 200.0 and row["ecc_sbe_vol_total"] == 10
    assert row["extra"] == {"fan_speed": 34.0}  # no column: kept, not dropped
    assert all(row[f.column] is not None for f in FIELDS)

    gpu = db.execute("SELECT * FROM gpus WHERE gpu_uuid = %s", (uuid_for(0),)).fetchone()
    assert gpu["model"] == "NVIDIA H100 80GB HBM3" and gpu["labels"] == {"zone": "test-a"}
    assert gpu["first_seen"] == t0 and gpu["last_seen"] == t0 + timedelta(seconds=178)

    tokens = db.execute("SELECT sum(requests) AS r, sum(prompt_tokens) AS p FROM token_usage").fetchone()
    assert (tokens["r"], tokens["p"]) == (15, 1500)

    # minute 1 of GPU 0 holds samples i = 30..59: gpu_temp 70..99, ecc 30..59, no throttle bits
    m1 = db.execute("SELECT * FROM gpu_metrics_1m WHERE gpu_uuid = %s AND bucket = %s",
                    (uuid_for(0), t0 + timedelta(minutes=1))).fetchone()
    assert m1["samples"] == 30
    assert m1["gpu_temp_avg"] == pytest.approx(84.5) and (m1["gpu_temp_min"], m1["gpu_temp_max"]) == (70, 99)
    assert (m1["ecc_sbe_vol_total_min"], m1["ecc_sbe_vol_total_max"]) == (30, 59)
    assert m1["clocks_event_reasons_or"] == 0
    m0 = db.execute("SELECT clocks_event_reasons_or AS bits FROM gpu_metrics_1m WHERE gpu_uuid = %s AND bucket = %s",
                    (uuid_for(0), t0)).fetchone()
    assert m0["bits"] == 0x1
    m2 = db.execute("SELECT samples, clocks_event_reasons_or AS bits FROM gpu_metrics_1m "
                    "WHERE gpu_uuid = %s AND bucket = %s", (uuid_for(0), t0 + timedelta(minutes=2))).fetchone()
    assert (m2["samples"], m2["bits"]) == (30, 0x40)
    h = db.execute("SELECT * FROM gpu_metrics_1h WHERE gpu_uuid = %s", (uuid_for(1),)).fetchall()
    assert len(h) == 1 and h[0]["bucket"] == t0 and h[0]["samples"] == 90
    assert h[0]["gpu_temp_avg"] == pytest.approx(41 + 44.5) and h[0]["power_usage_avg"] == pytest.approx(200.0)
    assert h[0]["clocks_event_reasons_or"] == 0x41

    scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert f'sink_messages_consumed_total{{topic="{kafka_settings.telemetry_topic}"}} 180.0' in scraped
    assert 'sink_rows_written_total{table="gpu_metrics"} 180.0' in scraped
    assert "sink_batch_seconds_count" in scraped and "sink_consumer_lag" in scraped


def test_replay_never_double_counts(kafka_settings, db, monkeypatch):
    t0 = base_time()
    fleet = _fleet(t0)
    produce(kafka_settings, kafka_settings.telemetry_topic, fleet[:100])
    Sink(kafka_settings, until_idle=1.0).run()
    before = db.execute("SELECT sum(samples) AS s, sum(gpu_temp_avg * samples) AS t FROM gpu_metrics_1m").fetchone()

    # a replay (new group: everything again) overlapping with new samples
    produce(kafka_settings, kafka_settings.telemetry_topic, fleet[60:])
    monkeypatch.setattr(kafka_settings, "kafka_group_id", kafka_settings.kafka_group_id + ".replay")
    summary = Sink(kafka_settings, until_idle=1.0).run()

    assert summary.metrics_written == 80 and summary.duplicates == 100 + 40
    assert count_rows(db) == 180
    after = db.execute("SELECT sum(samples) AS s FROM gpu_metrics_1m").fetchone()
    assert before["s"] == 100 and after["s"] == 180
    assert db.execute("SELECT sum(samples) AS s FROM gpu_metrics_1h").fetchone()["s"] == 180
    exact = db.execute(
        "SELECT count(*) AS n FROM gpu_metrics_1m r JOIN (SELECT gpu_uuid, date_trunc('minute', time) AS bucket, "
        "count(*) AS c, avg(gpu_temp) AS a, max(ecc_sbe_vol_total) AS e FROM gpu_metrics GROUP BY 1, 2) raw "
        "USING (gpu_uuid, bucket) WHERE r.samples = raw.c AND abs(r.gpu_temp_avg - raw.a) < 1e-9 "
        "AND r.ecc_sbe_vol_total_max = raw.e").fetchone()["n"]
    assert exact == db.execute("SELECT count(*) AS n FROM gpu_metrics_1m").fetchone()["n"] == 6


def test_two_writes_in_flight_holding_the_same_rows_store_them_once(kafka_settings, db, monkeypatch):
    """Batches of 60 from one partition, each followed by a batch of the same samples: with two writers the copy
    is stored while its original's transaction may still be open. Every sample is stored once, every copy is
    counted as a duplicate, and the rollups equal a recomputation from raw rows."""
    t0 = base_time()
    samples = [sample(t0 + timedelta(seconds=i), gpu=3, gpu_temp=30 + i % 50) for i in range(240)]
    doubled = [s for start in range(0, 240, 60) for s in samples[start:start + 60] * 2]
    produce(kafka_settings, kafka_settings.telemetry_topic, doubled)
    for name, value in (("sink_batch_size", 60), ("sink_batch_max_latency_ms", 2000), ("sink_writers", 2)):
        monkeypatch.setattr(kafka_settings, name, value)

    summary = Sink(kafka_settings, until_idle=1.5).run()

    assert (summary.metrics_written, summary.duplicates, summary.batches) == (240, 240, 8)
    assert count_rows(db) == 240
    assert db.execute("SELECT sum(samples) AS s FROM gpu_metrics_1m").fetchone()["s"] == 240
    assert_rollups_exact(db)
