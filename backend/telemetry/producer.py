"""Put telemetry messages on Kafka: keyed by GPU UUID, idempotent, topics created first, delivery errors counted.

`KafkaOutput` and `StdoutOutput` share one seam, `send(message)`, so every collector can also print JSON lines for
debugging. `produce_simulated` (history as fast as possible) and `run_live` (real time) are the Python API the demo
and the console use.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Protocol, TypeVar

from confluent_kafka import KafkaError, KafkaException

from backend.config import Settings
from backend.errors import Unavailable
from backend.messaging.kafka import ensure_topics, make_producer
from backend.telemetry.collectors.pacing import paced
from backend.telemetry.collectors.tokens import with_token_usage
from backend.telemetry.messages import GpuSample, Message, TokenUsage, encode, key
from backend.telemetry.simulator import Fleet

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class ProduceReport:
    """What happened to the messages handed to an output."""

    sent: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    by_topic: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def delivered(self) -> int:
        return self.sent - self.failed

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        topics = ", ".join(f"{t}: {n}" for t, n in sorted(self.by_topic.items())) or "nothing"
        text = f"sent {self.sent} messages ({topics}) in {self.seconds:.1f} s, {self.rate:,.0f} msg/s"
        if self.failed:
            reasons = "; ".join(f"{reason} ×{n}" for reason, n in self.errors.most_common(5))
            text += f"; {self.failed} NOT delivered ({reasons})"
        return text


class Output(Protocol):
    report: ProduceReport

    def send(self, message: Message) -> None: ...

    def close(self) -> ProduceReport: ...


class KafkaOutput:
    """An idempotent producer onto the telemetry and token-usage topics (the DLQ topic is created too)."""

    def __init__(self, settings: Settings, *, flush_timeout: float = 60.0) -> None:
        self._topic_of = {GpuSample: settings.telemetry_topic, TokenUsage: settings.token_usage_topic}
        self._flush_timeout = flush_timeout
        self.report = ProduceReport()
        try:
            ensure_topics([settings.telemetry_topic, settings.token_usage_topic, settings.dlq_topic], settings)
        except KafkaException as exc:
            reason = exc.args[0].str()
            raise Unavailable(f"Kafka at {settings.kafka_bootstrap_servers} is not usable: {reason}") from None
        # Only failures are reported back: counting successes would cost a callback per message.
        self._producer = make_producer(settings, **{"delivery.report.only.error": True,
                                                    "on_delivery": self._on_delivery})
        self._started = time.perf_counter()

    def _on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self.report.failed += 1
            self.report.errors[err.str()] += 1

    def send(self, message: Message) -> None:
        self.send_encoded(self._topic_of[type(message)], key(message), encode(message))

    def send_encoded(self, topic: str, message_key: bytes, value: bytes) -> None:
        """The fast path for callers that pre-encode (benchmarks, replays)."""
        while True:
            try:
                self._producer.produce(topic, value, message_key)
                break
            except BufferError:  # local queue full: let librdkafka drain it
                self._producer.poll(0.05)
        self.report.sent += 1
        self.report.by_topic[topic] += 1
        if self.report.sent % 10_000 == 0:
            self._producer.poll(0)

    def close(self) -> ProduceReport:
        """Flush; whatever is still queued after the timeout counts as failed."""
        remaining = self._producer.flush(self._flush_timeout)
        if remaining:
            self.report.failed += remaining
            self.report.errors[f"still queued after {self._flush_timeout:.0f} s flush"] += remaining
        self.report.seconds = time.perf_counter() - self._started
        return self.report


class OutputClosed(Exception):
    """The reader went away (`… --stdout | head`): stop producing, quietly."""


class StdoutOutput:
    """JSON lines on stdout instead of Kafka (`--stdout`), for debugging and piping."""

    def __init__(self, stream: IO[bytes] | None = None) -> None:
        self._stream = stream or sys.stdout.buffer
        self._broken = False
        self.report = ProduceReport()
        self._started = time.perf_counter()

    def send(self, message: Message) -> None:
        try:
            self._stream.write(encode(message) + b"\n")
        except BrokenPipeError:
            self._broken = True
            raise OutputClosed from None
        self.report.sent += 1
        self.report.by_topic["stdout"] += 1

    def close(self) -> ProduceReport:
        if self._broken:  # nothing more can be written; keep the interpreter's final flush from failing too
            os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())
        else:
            self._stream.flush()
        self.report.seconds = time.perf_counter() - self._started
        return self.report


def counted(items: Iterable[T], tick: Callable[[], None]) -> Iterator[T]:
    """The items, calling `tick()` after each is taken (progress where the work is generated)."""
    for item in items:
        yield item
        tick()


def pump(messages: Iterable[Message], output: Output, *, stop: threading.Event | None = None) -> ProduceReport:
    """Send every message (until `stop` is set), then close the output and return its report."""
    try:
        for message in messages:
            output.send(message)
            if stop is not None and stop.is_set():
                break
    except OutputClosed:
        log.info("output closed by the reader; stopping")
    finally:
        report = output.close()
    return report


def produce_simulated(settings: Settings, fleet: Fleet, end: datetime, *, start: datetime | None = None,
                      interval: timedelta = timedelta(seconds=10), tokens: bool = True,
                      token_every: timedelta = timedelta(seconds=60),
                      progress: Callable[[int, int], None] | None = None, output: Output | None = None,
                      ) -> ProduceReport:
    """Simulated history from `start` (default: the fleet's start, or where it stopped) to `end`, as fast as
    possible. `progress(done, total)` counts GPU samples about every 1000; `total` is an upper bound until the
    last call (GPUs that fall off the bus stop early), which reports `(done, done)`."""
    begin = start or fleet.resume_at
    steps = max(0, -(-(end - begin) // interval))
    total, done = steps * len(fleet.gpus), 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None and done % 1000 == 0:
            progress(done, total)

    samples = counted(fleet.samples(begin, end, interval), tick)
    messages = with_token_usage(fleet, samples, token_every) if tokens else samples
    report = pump(messages, output or KafkaOutput(settings))
    if progress is not None:
        progress(done, done)
    return report


def run_live(settings: Settings, fleet: Fleet, *, interval: timedelta = timedelta(seconds=10), tokens: bool = True,
             token_every: timedelta = timedelta(seconds=60), stop: threading.Event | None = None,
             count: int | None = None, output: Output | None = None) -> ProduceReport:
    """Simulate in real time, one sample per GPU every `interval`, until `stop` is set (or `count` steps).
    Continues the fleet's counters after a backfill."""
    begin = max(fleet.resume_at, datetime.now(UTC))
    end = begin + count * interval if count is not None else None
    samples = paced(fleet.samples(begin, end, interval), stop=stop)
    messages = with_token_usage(fleet, samples, token_every) if tokens else samples
    return pump(messages, output or KafkaOutput(settings), stop=stop)
