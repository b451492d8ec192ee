"""Dead letters: invalid messages go to DLQ_TOPIC with their original bytes and key, and headers that say why
and where they came from. Nothing a collector sends is dropped silently.

A copy has to fit the producer's record limit (`letter_cap`): a reject that does not fit travels cut to fit, as
reason `too_large` with its original size and sha256, so a near-1 MB message cannot stop the sink. A dead letter
the broker refuses stays here and is produced again by the next `flush()`, so the sink never commits past it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from backend.config import Settings
from backend.errors import ConfigError, Unavailable
from backend.messaging.kafka import make_producer
from backend.telemetry.sink.validate import Rejected

REASON = "dlq.reason"
DETAIL = "dlq.detail"
SOURCE_TOPIC = "dlq.source.topic"
SOURCE_PARTITION = "dlq.source.partition"
SOURCE_OFFSET = "dlq.source.offset"
REJECTED_AT = "dlq.rejected_at"
ORIGINAL_SIZE = "dlq.original.size"  # only on a copy cut to fit: the value's size and sha256 before the cut
ORIGINAL_SHA256 = "dlq.original.sha256"
ORIGINAL_KEY_SIZE = "dlq.original.key_size"  # only when the key was cut as well
ORIGINAL_KEY_SHA256 = "dlq.original.key_sha256"
TOO_LARGE = "too_large"
_MAX_DETAIL = 512

LIBRDKAFKA_MESSAGE_MAX_BYTES = 1_000_000  # librdkafka's default message.max.bytes (Kafka brokers allow 1048588)
MIN_LETTER_BYTES = 16 * 1024  # the headers, a cut key and a useful start of the value
KEPT_KEY_BYTES = 256  # what a cut copy keeps of a longer key
# A record at its widest (librdkafka's RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD) plus the record batch header, which the
# broker counts against its limit too; each header costs two varints of at most 5 bytes.
_RECORD_OVERHEAD = 36 + 61
_HEADER_OVERHEAD = 10
BACKPRESSURE_WAIT_S = 0.05
FLUSH_TIMEOUT_S = 10.0


def letter_cap(settings: Settings) -> int:
    """The largest dead letter, as a whole record: SINK_DLQ_MAX_MESSAGE_BYTES, else the producer's
    `message.max.bytes` (KAFKA_CLIENT_CONFIG, else librdkafka's default)."""
    configured = settings.kafka_client_config.get("message.max.bytes", LIBRDKAFKA_MESSAGE_MAX_BYTES)
    cap = settings.sink_dlq_max_message_bytes or (int(configured) if str(configured).isdigit() else 0)
    if cap < MIN_LETTER_BYTES:
        raise ConfigError(f"SINK_DLQ_MAX_MESSAGE_BYTES (or message.max.bytes in KAFKA_CLIENT_CONFIG) must be a "
                          f"whole number of at least {MIN_LETTER_BYTES} bytes")
    return cap


def dlq_headers(message: Message, rejected: Rejected) -> list[tuple[str, bytes]]:
    return [
        (REASON, rejected.reason.encode()),
        (DETAIL, rejected.detail[:_MAX_DETAIL].encode()),
        (SOURCE_TOPIC, message.topic().encode()),
        (SOURCE_PARTITION, str(message.partition()).encode()),
        (SOURCE_OFFSET, str(message.offset()).encode()),
        (REJECTED_AT, datetime.now(UTC).isoformat().encode()),
    ]


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead letter as produced; kept until the broker acknowledges it."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    reason: str


def _record_bytes(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    """An upper bound of what librdkafka and the broker count for the record against `message.max.bytes`."""
    return (_RECORD_OVERHEAD + len(key or b"") + len(value or b"")
            + sum(_HEADER_OVERHEAD + len(name) + len(data) for name, data in headers))


def _original(size_header: str, sha_header: str, data: bytes) -> list[tuple[str, bytes]]:
    return [(size_header, str(len(data)).encode()), (sha_header, hashlib.sha256(data).hexdigest().encode())]


def make_letter(message: Message, rejected: Rejected, cap: int) -> Letter:
    """The reject's own key and bytes with the dlq headers, or, where that record would exceed `cap`, a copy
    cut to fit: reason `too_large`, the original reason in the detail, the original size and sha256."""
    key, value = message.key(), message.value()
    headers = dlq_headers(message, rejected)
    if _record_bytes(key, value, headers) <= cap:
        return Letter(key, value, headers, rejected.reason)
    value = value or b""
    headers = [*dlq_headers(message, Rejected(TOO_LARGE, f"{rejected.reason}: {rejected.detail}")),
               *_original(ORIGINAL_SIZE, ORIGINAL_SHA256, value)]
    if key is not None and len(key) > KEPT_KEY_BYTES:
        headers += _original(ORIGINAL_KEY_SIZE, ORIGINAL_KEY_SHA256, key)
        key = key[:KEPT_KEY_BYTES]
    return Letter(key, value[:cap - _record_bytes(key, b"", headers)], headers, TOO_LARGE)


class DeadLetters:
    """Produces dead letters asynchronously. `flush()` returns only once the broker has acknowledged every letter
    sent so far; one it refused is kept and produced again by the next `flush()`. `wait(seconds)` spends a
    back-pressure pause (the sink keeps its consumer group membership meanwhile)."""

    def __init__(self, producer: Producer, topic: str, cap: int, wait: Callable[[float], None]) -> None:
        self._producer = producer
        self._topic = topic
        self._cap = cap
        self._wait = wait
        self._refused: list[Letter] = []
        self._last_error = ""

    def send(self, message: Message, rejected: Rejected) -> str:
        """Queue the reject's dead letter; returns the reason it carries (`too_large` when cut to fit)."""
        letter = make_letter(message, rejected, self._cap)
        self._produce(letter)
        return letter.reason

    def _produce(self, letter: Letter) -> None:
        """A full producer queue is back-pressure: serve delivery reports (they free the queue), wait, retry."""
        while True:
            try:
                self._producer.produce(self._topic, value=letter.value, key=letter.key, headers=letter.headers,
                                       on_delivery=partial(self._delivered, letter))
                break
            except BufferError:
                self._producer.poll(0)
                self._wait(BACKPRESSURE_WAIT_S)
        self._producer.poll(0)

    def _delivered(self, letter: Letter, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._refused.append(letter)
            self._last_error = error.str()

    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Produce the refused letters again and wait until the broker has acknowledged every letter; raise
        `Unavailable` if it has not (what it refused stays for the next call)."""
        retry, self._refused = self._refused, []
        for letter in retry:
            self._produce(letter)
        try:
            unanswered = self._producer.flush(timeout)
        except KafkaException as exc:
            raise Unavailable(f"dead-letter topic {self._topic}: {exc.args[0].str()}") from None
        if self._refused or unanswered:
            raise Unavailable(f"dead-letter topic {self._topic}: {len(self._refused)} letters refused "
                              f"({self._last_error or 'none'}), {unanswered} unanswered after {timeout:.0f}s")


def make_dead_letters(settings: Settings, wait: Callable[[float], None]) -> DeadLetters:
    """Dead letters for `settings.dlq_topic`, through a producer whose record and batch limits are the cap."""
    cap = letter_cap(settings)
    producer = make_producer(settings, **{"linger.ms": 0, "message.max.bytes": cap, "batch.size": cap})
    return DeadLetters(producer, settings.dlq_topic, cap, wait)
