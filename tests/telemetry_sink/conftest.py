"""Helpers for the sink tests: schema-following messages, producing them, and running sinks in or out of process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, Producer, TopicPartition

from backend.config import Settings
from backend.identity import SYSTEM
from backend.messaging.kafka import ensure_topics, make_producer
from backend.telemetry import pipeline_status
from backend.telemetry.fields import FIELDS
from backend.telemetry.sink.validate import MAX_MESSAGE_BYTES


def base_time() -> datetime:
    """A whole hour two hours ago: inside retention, clear of the future limit, easy to bucket by hand."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)


def uuid_for(n: int) -> str:
    return f"GPU-{n:08x}-0000-4000-8000-{n:012x}"


def sample(ts: datetime, gpu: int = 0, host: str = "host-a", **metrics: float) -> dict:
    """A gpu.metrics.v1 message; every catalog field gets a plausible value unless given."""
    values: dict[str, float] = {f.column: (1.0 if f.kind == "gauge" else 7) for f in FIELDS}
    values.update(metrics)
    return {
        "schema": "gpu.metrics.v1", "ts": ts.isoformat().replace("+00:00", "Z"), "host": host,
        "gpu_index": gpu % 8, "gpu_uuid": uuid_for(gpu), "model": "NVIDIA H100 80GB HBM3", "driver": "550.54.15",
        "source": "simulator", "labels": {"zone": "test-a"}, "metrics": values,
    }


def poison_messages(t0: datetime) -> list[tuple[bytes, str]]:
    """One gpu.metrics.v1 message per way of breaking the contract: (message bytes, expected dead-letter reason)."""
    good = sample(t0)

    def variant(**changes: object) -> bytes:
        return orjson.dumps({**good, **changes})

    missing_host = {k: v for k, v in good.items() if k != "host"}
    return [
        (b"this is not json", "invalid_json"),
        (b'{"ts": "2026-01-01T00:00:00Z", "host": ', "invalid_json"),
        (variant(gpu_index="three"), "schema"),
        (orjson.dumps(missing_host), "schema"),
        (variant(metrics={"gpu_temp": True}), "schema"),
        (variant(unexpected="field"), "schema"),
        (json.dumps({**good, "metrics": {"gpu_temp": float("nan")}}).encode(), "invalid_json"),
        (json.dumps({**good, "metrics": {"power_usage": float("inf")}}).encode(), "invalid_json"),
        (variant(metrics={"gpu_temp": 1e999}), "schema"),
        (variant(metrics={"ecc_dbe_vol_total": -1}), "negative_counter"),
        (variant(metrics={"gpu_temp": 900.0}), "out_of_range"),
        (variant(metrics={"Bad-Name": 1.0}), "schema"),
        (variant(ts=(datetime.now(UTC) + timedelta(hours=2)).isoformat()), "ts_future"),
        (variant(ts="2001-01-01T00:00:00Z"), "ts_too_old"),
        (variant(ts="2026-11-25T08:00:00"), "schema"),  # no offset: ambiguous
        (variant(labels={"blob": "x" * (MAX_MESSAGE_BYTES + 10)}), "oversized"),
        (variant(host="nul\u0000host", gpu_uuid="GPU-deadbeef-nul"), "db_rejected"),  # only PostgreSQL knows
    ]


def token_usage(ts: datetime, gpu: int = 0, model: str = "llama-3-8b", requests: int = 10) -> dict:
    return {
        "schema": "token.usage.v1", "ts": ts.isoformat(), "host": "host-a", "gpu_uuid": uuid_for(gpu),
        "served_model": model, "interval_s": 10.0, "requests": requests, "prompt_tokens": 100 * requests,
        "completion_tokens": 50 * requests, "latency_ms_p50": 80.0, "latency_ms_p95": 200.0, "labels": {},
    }


def produce(settings: Settings, topic: str, messages: Iterable[dict | bytes], key: str | None = None,
            producer: Producer | None = None) -> int:
    """Produce JSON messages keyed by gpu_uuid (raw bytes go as they are); returns how many."""
    if producer is None:
        ensure_topics([settings.telemetry_topic, settings.token_usage_topic, settings.dlq_topic], settings)
        producer = make_producer(settings)
    count = 0
    for message in messages:
        if isinstance(message, bytes):
            producer.produce(topic, key=(key or "raw").encode(), value=message)
        else:
            producer.produce(topic, key=message["gpu_uuid"].encode(), value=orjson.dumps(message))
        count += 1
        if count % 10000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    return count


def sink_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a `stream-platform pipeline sink` subprocess with this test's settings."""
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": settings.database_url, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "TELEMETRY_TOPIC": settings.telemetry_topic, "TOKEN_USAGE_TOPIC": settings.token_usage_topic,
        "DLQ_TOPIC": settings.dlq_topic, "KAFKA_GROUP_ID": settings.kafka_group_id,
        "KAFKA_PARTITIONS": str(settings.kafka_partitions), "SECRETS_ENV_FILE": "/nonexistent/secrets.env",
    })
    env.update(extra)
    return env


def start_sink(settings: Settings, *args: str, full_cli: bool = False, **env: str) -> subprocess.Popen:
    """A sink subprocess; `full_cli` goes through `stream-platform pipeline sink` (slower start: every area's
    imports), otherwise `python -m backend.telemetry.sink_cli`."""
    command = ([str(Path(sys.executable).parent / "stream-platform"), "pipeline", "sink"] if full_cli
               else [sys.executable, "-m", "backend.telemetry.sink_cli"])
    return subprocess.Popen(
        [*command, *args], env=sink_env(settings, **env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


class Output(threading.Thread):
    """Collects a subprocess's output lines as they come, so a test can wait for one."""

    def __init__(self, process: subprocess.Popen) -> None:
        super().__init__(daemon=True)
        self.process, self.lines = process, []
        self.start()

    def run(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def read_topic(bootstrap: str, topic: str, timeout: float = 30.0) -> list[Message]:
    """Every message in `topic`, read by a consumer that assigns all partitions itself (no group join)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        unread, found = set(partitions), []
        deadline = time.monotonic() + timeout
        while unread and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error() is None:
                found.append(message)
            elif message.error().code() == KafkaError._PARTITION_EOF:
                unread.discard(message.partition())
        assert not unread, f"partitions {sorted(unread)} of {topic} not read to the end within {timeout}s"
        return found
    finally:
        consumer.close()


def committed_offsets(settings: Settings) -> dict[tuple[str, int], int | None]:
    """The sink group's committed offset per partition of the telemetry and token topics (None: none yet)."""
    return {(p.topic, p.partition): p.committed for p in pipeline_status.consumer_lag(SYSTEM, settings=settings)}


def count_rows(db, table: str = "gpu_metrics") -> int:  # type: ignore[no-untyped-def]
    return db.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"]


def stored_once(db) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Raw rows and the samples the 1-minute and 1-hour rollups count: all three equal when every sample was
    stored exactly once (a replayed batch would count twice in a rollup)."""
    rollups = {name: int(db.execute(f"SELECT coalesce(sum(samples), 0) AS s FROM gpu_metrics_{name}").fetchone()["s"])
               for name in ("1m", "1h")}
    return {"rows": count_rows(db), **rollups}


def _reference_columns() -> dict[str, str]:
    """Rollup column → its aggregate over raw rows, written independently of the rollup code on purpose."""
    columns = {"samples": "count(*)", "host": "max(host)", "gpu_index": "max(gpu_index)",
               "clocks_event_reasons_or": "bit_or(clocks_event_reasons)"}
    for f in FIELDS:
        columns |= {f"{f.column}_min": f"min({f.column})", f"{f.column}_max": f"max({f.column})"}
        if f.kind == "gauge":
            columns[f"{f.column}_avg"] = f"avg({f.column})"
    return columns


def _values(db, query: str) -> dict[tuple, object]:  # type: ignore[no-untyped-def]
    """{(gpu_uuid, bucket, column): value} for the reference columns of the rows `query` returns."""
    names = _reference_columns()
    return {(r["gpu_uuid"], r["bucket"], k): r[k] for r in db.execute(query).fetchall() for k in names}


def assert_rollups_exact(db, *, materialized: bool = False) -> None:  # type: ignore[no-untyped-def]
    """`gpu_metrics_1m` / `_1h` equal a recomputation from raw rows (averages to 1e-9, the rest exactly) and no
    bucket is both pending and materialized; with `materialized`, the state tables equal it on their own and
    nothing is pending."""
    exprs = ", ".join(f"{agg} AS {name}" for name, agg in _reference_columns().items())
    averages = ", ".join(f"{f.column}_sum / NULLIF({f.column}_n, 0) AS {f.column}_avg" for f in FIELDS
                         if f.kind == "gauge")
    for unit, name in (("minute", "1m"), ("hour", "1h")):
        expected = _values(db, f"SELECT gpu_uuid, date_trunc('{unit}', time, 'UTC') AS bucket, {exprs} "
                               "FROM gpu_metrics GROUP BY 1, 2")
        relations = [f"SELECT * FROM gpu_metrics_{name}"]
        if materialized:
            relations.append(f"SELECT *, {averages} FROM gpu_metrics_{name}_state")
        both = db.execute(f"SELECT count(*) AS n FROM gpu_metrics_{name}_state JOIN gpu_metrics_{name}_pending "
                          "USING (bucket)").fetchone()["n"]
        assert both == 0, f"{name}: {both} state rows of buckets still pending (the view would count them twice)"
        for relation in relations:
            found = _values(db, relation)
            assert found.keys() == expected.keys(), relation
            wrong = {k: (found[k], v) for k, v in expected.items()
                     if found[k] != v and not (isinstance(v, float) and found[k] == pytest.approx(v, rel=1e-9))}
            assert not wrong, f"{relation}: {len(wrong)} values differ, e.g. {list(wrong.items())[:3]}"
    if materialized:
        assert count_rows(db, "gpu_metrics_1m_pending") == count_rows(db, "gpu_metrics_1h_pending") == 0


@pytest.fixture
def sinks():  # type: ignore[no-untyped-def]
    """Subprocess sinks started by a test; any still running at the end are killed (only ours)."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()
