"""Collectors → producer → the real broker, consumed back and checked (independent of the sink)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from confluent_kafka.admin import AdminClient
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from backend.cli import app
from backend.messaging.kafka import client_config, make_consumer
from backend.telemetry.faults import FaultSpec
from backend.telemetry.messages import GpuSample, TokenUsage, decode
from backend.telemetry.producer import produce_simulated, run_live
from backend.telemetry.simulator import Fleet

DATA = Path(__file__).parent / "data"
SCHEMAS = {name: Draft202012Validator(json.loads(
    resources.files("backend.telemetry.schemas").joinpath(f"{name}.json").read_text()))
    for name in ("gpu.metrics.v1", "token.usage.v1")}


def consume(settings, topic: str, expected: int, timeout: float = 30.0) -> list[tuple[bytes, bytes, int]]:
    """(key, value, partition) of every message on `topic`, read from the beginning without a group join."""
    partitions = AdminClient(client_config(settings)).list_topics(topic, timeout=10).topics[topic].partitions
    consumer = make_consumer(f"check-{topic}", settings)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    out: list[tuple[bytes, bytes, int]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                out.append((msg.key(), msg.value(), msg.partition()))
            elif msg is None and len(out) >= expected:
                break
    finally:
        consumer.close()
    return out


def test_cli_simulator_produces_keyed_valid_messages_and_topics_first(kafka_settings):
    result = CliRunner().invoke(app, ["pipeline", "produce", "--source", "simulator", "--hosts", "2",
                                      "--gpus-per-host", "3", "--count", "12", "--interval", "10s", "--tokens",
                                      "--token-interval", "30s", "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert "NOT delivered" not in result.output
    topics = AdminClient(client_config(kafka_settings)).list_topics(timeout=10).topics
    for name in (kafka_settings.telemetry_topic, kafka_settings.token_usage_topic, kafka_settings.dlq_topic):
        assert len(topics[name].partitions) == kafka_settings.kafka_partitions == 4

    metrics = consume(kafka_settings, kafka_settings.telemetry_topic, 72)
    assert len(metrics) == 72
    partition_of: dict[bytes, set[int]] = defaultdict(set)
    times: dict[str, list[datetime]] = defaultdict(list)
    for key, value, partition in metrics:
        message = decode(value)
        assert isinstance(message, GpuSample) and key == message.gpu_uuid.encode()
        assert not list(SCHEMAS["gpu.metrics.v1"].iter_errors(json.loads(value)))
        partition_of[key].add(partition)
        times[message.gpu_uuid].append(message.ts)
    assert len(partition_of) == 6 and all(len(p) == 1 for p in partition_of.values())  # one GPU, one partition
    assert all(t == sorted(t) and len(t) == 12 for t in times.values())  # per-GPU order kept

    usage = consume(kafka_settings, kafka_settings.token_usage_topic, 1)
    assert usage
    for key, value, _ in usage:
        message = decode(value)
        assert isinstance(message, TokenUsage) and key == message.gpu_uuid.encode()
        assert message.gpu_uuid in times
        assert not list(SCHEMAS["token.usage.v1"].iter_errors(json.loads(value)))


def test_backfill_api_with_faults_reports_progress_and_every_sample_arrives(kafka_settings):
    now = datetime.now(UTC).replace(microsecond=0)
    fleet = Fleet(hosts=2, gpus_per_host=4, seed=21, faults=[FaultSpec.parse("xid79:gpu-node-01/2@1h")],
                  start=now - timedelta(hours=3))
    seen: list[tuple[int, int]] = []
    report = produce_simulated(kafka_settings, fleet, end=now, interval=timedelta(minutes=1),
                               progress=lambda done, total: seen.append((done, total)))
    assert report.failed == 0 and report.sent == report.by_topic[kafka_settings.telemetry_topic] + \
        report.by_topic[kafka_settings.token_usage_topic]
    assert seen[0] == (1000, 8 * 180)
    assert seen[-1] == (8 * 180 - 74, 8 * 180 - 74)  # the fallen GPU reports 0..105 min, then nothing
    metrics = [decode(v) for _, v, _ in consume(kafka_settings, kafka_settings.telemetry_topic, seen[-1][0])]
    assert len(metrics) == seen[-1][0] == report.by_topic[kafka_settings.telemetry_topic]
    fallen = fleet.schedule.events[0]
    theirs = sorted((m for m in metrics if m.gpu_uuid == fallen.gpu_uuid), key=lambda m: m.ts)
    assert theirs[-1].ts == fallen.critical_at and theirs[-1].metrics["xid_errors"] == 79

    # live continues the same fleet: counters keep growing from where the backfill stopped
    last_energy = {m.gpu_uuid: m.metrics["total_energy_consumption"] for m in sorted(metrics, key=lambda m: m.ts)}
    stop = threading.Event()
    threading.Timer(1.5, stop.set).start()
    live = run_live(kafka_settings, fleet, interval=timedelta(seconds=1), tokens=False, stop=stop)
    assert live.failed == 0 and live.sent >= 7  # at least one step for the 7 GPUs still on the bus
    after = [decode(v) for _, v, _ in consume(kafka_settings, kafka_settings.telemetry_topic, len(metrics) + live.sent)]
    fresh = [m for m in after if m.ts >= now]
    assert len(fresh) == live.sent and fallen.gpu_uuid not in {m.gpu_uuid for m in fresh}
    assert all(m.metrics["total_energy_consumption"] > last_energy[m.gpu_uuid] for m in fresh)
    assert all(abs((m.ts - datetime.now(UTC)).total_seconds()) < 30 for m in fresh)  # stamped in real time


def test_csv_replay_to_kafka(kafka_settings):
    result = CliRunner().invoke(app, ["pipeline", "produce", "--source", "csv", "--file", str(DATA / "dcgm_long.csv")])
    assert result.exit_code == 0, result.output
    messages = [decode(v) for _, v, _ in consume(kafka_settings, kafka_settings.telemetry_topic, 4)]
    assert len(messages) == 4 and {m.source for m in messages} == {"csv"}


def test_live_cli_stops_on_sigterm_after_flushing_everything(kafka_settings):
    proc = subprocess.Popen([sys.executable, "-c", "from backend.telemetry.cli import app; app()", "produce",
                             "--source", "simulator", "--hosts", "1", "--gpus-per-host", "2", "--interval", "1s"],
                            stderr=subprocess.PIPE, text=True)
    try:
        produced = consume(kafka_settings, kafka_settings.telemetry_topic, 4, timeout=30)
        assert len(produced) >= 4  # live: two GPUs, one sample each per second
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    sent = int(re.search(r"sent (\d+) messages", stderr)[1])
    assert len(consume(kafka_settings, kafka_settings.telemetry_topic, sent)) == sent
