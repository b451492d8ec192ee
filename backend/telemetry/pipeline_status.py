"""What the console's Overview and Pipeline pages show: ingest rate, consumer lag, sink instances, dead letters.

Two sources, on purpose. What pages render comes from the database only: the ingest rate from `gpu_metrics`, and
lag, write rate, the sinks and their dead-letter counts from the reports each sink records in `sink_status`
(`sink.status_report`) — no broker call on a render path. The doubt rule: lag is None (unknown), never 0, unless
running sinks reported within three of their intervals and together hold every partition. The broker itself is
asked only on demand (`live`, `recent_dead_letters`: the Pipeline page's buttons, `pipeline status --live`).

Every function takes the acting principal (any signed-in role may look). Lag is measured from fetch responses,
not from ListOffsets: tansu answers ListOffsets with a stale high watermark (shared/FIELD_NOTES.md), while the
watermark a fetch carries is current on Kafka and tansu alike.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from backend.config import Settings, get_settings
from backend.db.connection import query_connection
from backend.errors import Unavailable
from backend.identity import Principal, Role, require_role
from backend.messaging.kafka import client_config
from backend.parsing import span_text
from backend.telemetry.sink import dlq
from backend.telemetry.sink.status_report import STALE_AFTER_INTERVALS

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
    """`end`: the high watermark of a fetch response; `lag`: end − committed. In a sink's report either may be None
    (not fetched yet, group offset unknown); `position`: the next offset the sink hands to a batch (reports only)."""

    topic: str
    partition: int
    committed: int | None
    end: int | None
    lag: int | None
    position: int | None = None


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


@dataclass(frozen=True)
class SinkInstance:
    """One sink process as its last report says. `running`: reported within three of its intervals and not
    stopped; `dead_letters`: by reason, since it started."""

    instance_id: str
    host: str
    pid: int
    member_id: str | None
    started_at: datetime
    reported_at: datetime
    age_s: float
    stopped_at: datetime | None
    running: bool
    partitions: list[PartitionLag]
    samples_per_s: float
    messages_per_s: float
    dead_letters: dict[str, int]

    @property
    def state(self) -> str:
        """running; stopped (it said so on a clean stop); silent (no report for three intervals: crashed, hung or
        cut off from the database)."""
        return "running" if self.running else "stopped" if self.stopped_at is not None else "silent"


@dataclass(frozen=True)
class SinkStatus:
    """What the sinks of the group last recorded (no broker call). `lag_total`, `samples_per_s` and
    `messages_per_s` are None when unknown, and `unknown_because` then says why in words; `dead_letters` sums the
    running sinks' counts by reason."""

    group: str
    instances: list[SinkInstance]
    lag: list[PartitionLag]
    lag_total: int | None
    samples_per_s: float | None
    messages_per_s: float | None
    dead_letters: dict[str, int]
    unknown_because: str | None

    @property
    def running(self) -> list[SinkInstance]:
        return [i for i in self.instances if i.running]


@dataclass(frozen=True)
class LiveView:
    """The broker's own answer, asked on demand: lag per partition from a probe consumer, the group's members,
    the newest dead letters (newest first) and the dead-letter topic's total."""

    lag: list[PartitionLag]
    members: list[GroupMember]
    dlq_topic: str
    dead_letters: list[DeadLetter]
    dlq_total: int
    asked_at: datetime

    @property
    def lag_total(self) -> int:
        return sum(p.lag or 0 for p in self.lag)


@dataclass
class PipelineOverview:
    """Everything the Pipeline page renders, from the database; `live` only when asked for (`pipeline status
    --live`)."""

    group: str
    dlq_topic: str
    ingest: IngestRate
    sinks: SinkStatus
    live: LiveView | None = None


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


_REPORTS = """
SELECT instance_id, host, pid, member_id, started_at, reported_at, stopped_at, topic_partitions, partitions,
       samples_per_s, messages_per_s, dead_letters, extract(epoch FROM now() - reported_at)::float8 AS age_s,
       stopped_at IS NULL AND reported_at >= now() - make_interval(secs => %(stale)s * interval_s) AS running
FROM sink_status WHERE group_id = %(group)s ORDER BY reported_at DESC
"""


def sink_status(principal: Principal, *, settings: Settings | None = None) -> SinkStatus:
    """Lag, write rate, sink instances and dead letters as the sinks last recorded them: one small query."""
    require_role(principal, Role.viewer, "view the pipeline status")
    settings = settings or get_settings()
    with query_connection(settings) as conn:
        rows = conn.execute(_REPORTS, {"stale": STALE_AFTER_INTERVALS, "group": settings.kafka_group_id}).fetchall()
    instances = [SinkInstance(
        r["instance_id"], r["host"], r["pid"], r["member_id"], r["started_at"], r["reported_at"], r["age_s"],
        r["stopped_at"], r["running"], [PartitionLag(**p) for p in r["partitions"]], r["samples_per_s"],
        r["messages_per_s"], r["dead_letters"]) for r in rows]
    running = [i for i in instances if i.running]
    held: dict[tuple[str, int], PartitionLag] = {}
    for instance in reversed(running):  # newest last: a partition two sinks report (a rebalance) counts as newest
        held |= {(p.topic, p.partition): p for p in instance.partitions}
    lag = [held[k] for k in sorted(held)]
    counts: dict[str, int] = {}
    for row in rows:
        if row["running"]:
            for topic, n in row["topic_partitions"].items():
                counts[topic] = max(counts.get(topic, 0), n)
    dead: dict[str, int] = {}
    for instance in running:
        for reason, n in instance.dead_letters.items():
            dead[reason] = dead.get(reason, 0) + n
    why = _lag_unknown_because(instances, running, held, counts, settings)
    return SinkStatus(
        group=settings.kafka_group_id, instances=instances, lag=lag,
        lag_total=None if why else sum(p.lag or 0 for p in lag),
        samples_per_s=sum(i.samples_per_s for i in running) if running else None,
        messages_per_s=sum(i.messages_per_s for i in running) if running else None,
        dead_letters=dead, unknown_because=why)


def _lag_unknown_because(instances: list[SinkInstance], running: list[SinkInstance],
                         held: dict[tuple[str, int], PartitionLag], counts: dict[str, int],
                         settings: Settings) -> str | None:
    """Why the recorded lag cannot be trusted, or None when it can."""
    if not instances:
        return "no sink has reported"
    if not running:
        newest = instances[0]
        if newest.stopped_at is not None:
            return f"the sink stopped {span_text(timedelta(seconds=newest.age_s))} ago"
        return f"the sink last reported {span_text(timedelta(seconds=newest.age_s))} ago"
    for topic in (settings.telemetry_topic, settings.token_usage_topic):
        if topic not in counts:
            return f"no running sink knows how many partitions {topic} has"
        missing = [p for p in range(counts[topic]) if (topic, p) not in held]
        if missing:
            return f"{topic}[{', '.join(map(str, missing))}] held by no running sink"
    unfetched = [f"{p.topic}[{p.partition}]" for p in held.values() if p.lag is None]
    if unfetched:
        return f"no fetch answered yet for {', '.join(unfetched)}"
    return None


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
    """Per partition of the telemetry and token topics: the group's committed offset, the end, the lag, as the
    broker answers now (a probe consumer: about 1.6 s on tansu; on demand only, never on a page's render path)."""
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
    """Members of the sink's consumer group and their partitions as the broker answers now (empty if it does not
    report them); on demand only."""
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
    each partition with a throwaway consumer, so the cost stays bounded however long the topic gets; on demand
    only."""
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


def live(principal: Principal, dlq_limit: int = 50, *, settings: Settings | None = None) -> LiveView:
    """Ask the broker now: lag per partition, the group's members and the newest dead letters (the Pipeline page's
    button, `pipeline status --live`)."""
    settings = settings or get_settings()
    asked_at = datetime.now(UTC)
    letters, total = recent_dead_letters(principal, dlq_limit, settings=settings)
    return LiveView(consumer_lag(principal, settings=settings), sink_instances(principal, settings=settings),
                    settings.dlq_topic, letters, total, asked_at)


def overview(principal: Principal, minutes: int = 5, *, settings: Settings | None = None) -> PipelineOverview:
    """Everything the Pipeline page renders, from the database alone."""
    settings = settings or get_settings()
    return PipelineOverview(group=settings.kafka_group_id, dlq_topic=settings.dlq_topic,
                            ingest=ingest_rate(principal, minutes, settings=settings),
                            sinks=sink_status(principal, settings=settings))
