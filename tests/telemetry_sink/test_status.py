"""The Pipeline page's numbers: ingest rate from the database, lag from the broker, the CLI's JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from backend.identity import SYSTEM
from backend.telemetry import pipeline_status
from backend.telemetry.sink.consumer import Sink
from tests.telemetry_sink.conftest import produce, sample, sink_env


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

    out = subprocess.run([str(Path(sys.executable).parent / "stream-platform"), "pipeline", "status", "--json"],
                         env=sink_env(kafka_settings), capture_output=True, text=True, timeout=60, check=True)
    report = json.loads(out.stdout)
    assert report["ingest"]["rows"] == 120 and report["group"] == kafka_settings.kafka_group_id
    assert sum(p["lag"] for p in report["lag"]) == 20 and report["dlq_total"] == 0
