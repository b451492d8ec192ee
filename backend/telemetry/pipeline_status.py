"""What the console's Pipeline page shows: ingest rate, consumer lag, sink instances and recent dead letters.

Every function takes the acting principal (any signed-in role may look). Lag is measured from fetch responses,
not from ListOffsets: tansu answers ListOffsets with a stale high watermark (shared/FIELD_NOTES.md), while the
watermark a fetch carries is current on Kafka and tansu alike.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from backend.config import Settings, get_settings
from backend.db.connection import query_connection
from backend.errors import Unavailable
from backend.identity import Principal, Role, require_role
from backend.messaging.kafka import client_config
from backend.telemetry.sink import dlq

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestRate:
    """Samples stored per minute of sample time over the window (newest minute last)."""

    minutes: int
    rows: int
    rows_per_s: float
    per_minute: list[tuple[datetime, int]]


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int


@dataclass(frozen=True)
class GroupMember:
    client_id: str
    host: str
    partitions: list[str]


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    timestamp: datetime | None
    key: str | None
    reason: str
    detail: str
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    size: int
    preview: str


@dataclass
class PipelineOverview:
    group: str
    dlq_topic: str
    ingest: IngestRate
    lag: list[PartitionLag] = field(default_factory=list)
    members: list[GroupMember] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    dlq_total: int = 0


def ingest_rate(principal: Principal, minutes: int = 5, *, settings: Settings | None = None) -> IngestRate:
    """Samples per second over the last `minutes`, by sample time (a backfill of old data does not count)."""
    require_role(principal, Role.viewer, "view the pipeline status")
    with query_connection(settings) as conn:
        rows = conn.execute(
            "SELECT date_trunc('minute', time) AS minute, count(*) AS n FROM gpu_metrics "
            "WHERE time >= now() - make_interval(mins => %s) AND time <= now() GROUP BY 1 ORDER BY 1",
            (minutes,),
        ).fetchall()
    per_minute = [(r["minute"], r["n"]) for r in rows]
    total = sum(n for _, n in per_minute)
    return IngestRate(minutes, total, total / (minutes * 60), per_minute)


def _probe(settings: Settings) -> Consumer:
    """A throwaway consumer that never joins or commits for a group."""
    return Consumer(client_config(settings) | {
        "group.id": f"pipeline-status-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "enable.partition.eof": True, "auto.offset.reset": "earliest", "isolation.level": "read_committed"})


def _partitions(consumer: Consumer, topic: str) -> list[TopicPartition]:
    meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        return []
    return [TopicPartition(topic, p) for p in sorted(meta.partitions)]


def _fetched_watermarks(consumer: Consumer, partitions: list[TopicPartition], timeout: float = 5.0) -> dict:
    """Assign at the end and poll until every partition has reported its watermark in a fetch response."""
    consumer.assign([TopicPartition(tp.topic, tp.partition, -1) for tp in partitions])  # -1: OFFSET_END
    marks: dict[tuple[str, int], tuple[int, int]] = {}
    deadline = time.monotonic() + timeout
    while len(marks) < len(partitions) and time.monotonic() < deadline:
        consumer.poll(0.1)
        for tp in partitions:
            low, high = consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0:
                marks[(tp.topic, tp.partition)] = (low, high)
    return marks


def consumer_lag(principal: Principal, *, settings: Settings | None = None) -> list[PartitionLag]:
    """Per partition of the telemetry and token topics: the group's committed offset, the end, the lag."""
    require_role(principal, Role.viewer, "view the pipeline status")
    settings = settings or get_settings()
    probe = _probe(settings)
    try:
        partitions = [tp for t in (settings.telemetry_topic, settings.token_usage_topic)
                      for tp in _partitions(probe, t)]
        if not partitions:
            return []
        group = Consumer(client_config(settings) | {"group.id": settings.kafka_group_id,
                                                    "enable.auto.commit": False})
        try:
            committed = {(tp.topic, tp.partition): tp.offset for tp in group.committed(partitions, timeout=10)}
        finally:
            group.close()
        marks = _fetched_watermarks(probe, partitions)
    except KafkaException as exc:
        raise Unavailable(f"Kafka unreachable: {exc.args[0].str()}") from None
    finally:
        probe.close()
    result = []
    for tp in partitions:
        low, high = marks.get((tp.topic, tp.partition), (0, 0))
        done = committed.get((tp.topic, tp.partition), OFFSET_INVALID)
        position = done if done >= 0 else low
        result.append(PartitionLag(tp.topic, tp.partition, done if done >= 0 else None, high,
                                   max(0, high - position)))
    return result


def sink_instances(principal: Principal, *, settings: Settings | None = None) -> list[GroupMember]:
    """Members of the sink's consumer group and their partitions (empty if the broker does not report them)."""
    require_role(principal, Role.viewer, "view the pipeline status")
    settings = settings or get_settings()
    admin = AdminClient(client_config(settings))
    try:
        description = admin.describe_consumer_groups([settings.kafka_group_id])[settings.kafka_group_id].result(10)
    except KafkaException as exc:
        log.info("consumer group description unavailable: %s", exc)
        return []
    return [
        GroupMember(m.client_id, m.host, [f"{tp.topic}[{tp.partition}]" for tp in m.assignment.topic_partitions])
        for m in description.members
    ]


def recent_dead_letters(principal: Principal, limit: int = 50, *, timeout: float = 10.0,
                        settings: Settings | None = None) -> tuple[list[DeadLetter], int]:
    """The newest `limit` dead letters (newest first) and the topic's total count. Reads from near the end of
    each partition with a throwaway consumer, so the cost stays bounded however long the topic gets."""
    require_role(principal, Role.viewer, "view the pipeline status")
    settings = settings or get_settings()
    probe = _probe(settings)
    found: list[DeadLetter] = []
    total = 0
    try:
        partitions = _partitions(probe, settings.dlq_topic)
        starts, open_partitions = [], set()
        for tp in partitions:
            low, stale_high = probe.get_watermark_offsets(tp, timeout=10)  # ≤ the real end: start early, not late
            starts.append(TopicPartition(tp.topic, tp.partition, max(low, stale_high - limit)))
            open_partitions.add(tp.partition)
        probe.assign(starts)
        deadline = time.monotonic() + timeout
        while open_partitions and time.monotonic() < deadline:
            message = probe.poll(0.2)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF:
                    open_partitions.discard(message.partition())
                continue
            found.append(_dead_letter(message))
        for tp in partitions:
            low, high = probe.get_watermark_offsets(tp, cached=True)
            total += max(0, high - low)
    except KafkaException as exc:
        raise Unavailable(f"Kafka unreachable: {exc.args[0].str()}") from None
    finally:
        probe.close()
    found.sort(key=lambda d: (d.timestamp or datetime.min.replace(tzinfo=UTC), d.offset), reverse=True)
    return found[:limit], total


def _dead_letter(message) -> DeadLetter:  # type: ignore[no-untyped-def]
    headers = {k: v.decode("utf-8", "replace") for k, v in (message.headers() or []) if v is not None}
    kind, stamp = message.timestamp()
    value = message.value() or b""
    key = message.key()
    return DeadLetter(
        partition=message.partition(), offset=message.offset(),
        timestamp=datetime.fromtimestamp(stamp / 1000, UTC) if kind and stamp > 0 else None,
        key=key.decode("utf-8", "replace") if key else None,
        reason=headers.get(dlq.REASON, "unknown"), detail=headers.get(dlq.DETAIL, ""),
        source_topic=headers.get(dlq.SOURCE_TOPIC, ""),
        source_partition=_int(headers.get(dlq.SOURCE_PARTITION)), source_offset=_int(headers.get(dlq.SOURCE_OFFSET)),
        size=_int(headers.get(dlq.ORIGINAL_SIZE)) or len(value), preview=value[:200].decode("utf-8", "replace"),
    )


def _int(text: str | None) -> int | None:
    return int(text) if text and text.lstrip("-").isdigit() else None


def overview(principal: Principal, minutes: int = 5, dlq_limit: int = 50, *,
             settings: Settings | None = None) -> PipelineOverview:
    """Everything the Pipeline page shows, in one call."""
    settings = settings or get_settings()
    letters, total = recent_dead_letters(principal, dlq_limit, settings=settings)
    return PipelineOverview(
        group=settings.kafka_group_id, dlq_topic=settings.dlq_topic,
        ingest=ingest_rate(principal, minutes, settings=settings), lag=consumer_lag(principal, settings=settings),
        members=sink_instances(principal, settings=settings), dead_letters=letters, dlq_total=total,
    )
