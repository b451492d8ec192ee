"""Turn a list of Kafka messages into rows for the writer, plus the rejects for the dead-letter topic."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from confluent_kafka import Message
from psycopg.types.json import Jsonb

from backend.telemetry.fields import COLUMNS
from backend.telemetry.sink.validate import (
    Rejected,
    TimeWindow,
    decode_gpu_sample,
    decode_token_usage,
)

METRIC_COLUMNS: tuple[str, ...] = ("time", "gpu_uuid", "host", "gpu_index", *COLUMNS, "extra")
TOKEN_COLUMNS: tuple[str, ...] = (
    "time", "host", "gpu_uuid", "served_model", "interval_s", "requests", "prompt_tokens", "completion_tokens",
    "latency_ms_p50", "latency_ms_p95", "labels",
)


@dataclass
class GpuSeen:
    """What the batch says about one GPU, for the `gpus` inventory upsert."""

    host: str
    gpu_index: int
    model: str | None
    driver: str | None
    labels: dict[str, str]
    first_seen: datetime
    last_seen: datetime

    def see(self, host: str, gpu_index: int, model: str | None, driver: str | None, labels: dict[str, str],
            ts: datetime) -> None:
        """Fold in one more sample, in place (once per sample: no object per sample): the newest sample's identity
        wins, a model or driver once known sticks."""
        if ts >= self.last_seen:
            self.host, self.gpu_index, self.model, self.driver, self.labels = (
                host, gpu_index, model or self.model, driver or self.driver, labels)
            self.last_seen = ts
        elif ts < self.first_seen:
            self.first_seen = ts


@dataclass
class Batch:
    """Valid rows, inventory, rejects and the offsets to commit once all of it is stored."""

    metric_rows: list[tuple[Any, ...]] = field(default_factory=list)
    token_rows: list[tuple[Any, ...]] = field(default_factory=list)
    gpus: dict[str, GpuSeen] = field(default_factory=dict)
    rejected: list[tuple[Message, Rejected]] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    consumed: int = 0

    def minutes(self) -> set[int]:
        """The minutes (Unix time // 60) the metric rows fall in; distinct times first, as a fleet shares them."""
        return {int(ts.timestamp()) // 60 for ts in {row[0] for row in self.metric_rows}}

    @property
    def days(self) -> set[date]:
        """The UTC days of the metric rows (their `gpu_metrics` partitions)."""
        return days_of(self.minutes())


def days_of(minutes: set[int]) -> set[date]:
    return {datetime.fromtimestamp(minute * 60, UTC).date() for minute in minutes}


def build_batch(messages: list[Message], telemetry_topic: str, window: TimeWindow) -> Batch:
    """Validate every message; the topic decides the contract. Offsets cover rejects too (they go to the DLQ)."""
    batch = Batch(consumed=len(messages))
    for message in messages:
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if offset + 1 > batch.offsets.get((topic, partition), -1):
            batch.offsets[(topic, partition)] = offset + 1
        try:
            if topic == telemetry_topic:
                add_sample(batch, message.value(), window)
            else:
                add_tokens(batch, message.value(), window)
        except Rejected as rejected:
            batch.rejected.append((message, rejected))
    return batch


def add_sample(batch: Batch, value: bytes | None, window: TimeWindow) -> None:
    """Validate one gpu.metrics.v1 message into the batch (raises `Rejected`)."""
    sample, values, extra = decode_gpu_sample(value, window)
    batch.metric_rows.append(
        (sample.ts, sample.gpu_uuid, sample.host, sample.gpu_index, *values, Jsonb(extra) if extra else None)
    )
    known = batch.gpus.get(sample.gpu_uuid)
    if known is None:
        batch.gpus[sample.gpu_uuid] = GpuSeen(sample.host, sample.gpu_index, sample.model, sample.driver,
                                              sample.labels, sample.ts, sample.ts)
    else:
        known.see(sample.host, sample.gpu_index, sample.model, sample.driver, sample.labels, sample.ts)


def add_tokens(batch: Batch, value: bytes | None, window: TimeWindow) -> None:
    """Validate one token.usage.v1 message into the batch (raises `Rejected`)."""
    u = decode_token_usage(value, window)
    batch.token_rows.append(
        (u.ts, u.host, u.gpu_uuid, u.served_model, u.interval_s, u.requests, u.prompt_tokens, u.completion_tokens,
         u.latency_ms_p50, u.latency_ms_p95, Jsonb(u.labels))
    )
