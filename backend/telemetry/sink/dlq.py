"""Dead letters: invalid messages go to DLQ_TOPIC with their original bytes and key, and headers that say why
and where they came from. Nothing a collector sends is dropped silently."""

from __future__ import annotations

from datetime import UTC, datetime

from confluent_kafka import KafkaException, Message, Producer

from backend.errors import Unavailable
from backend.telemetry.sink.validate import Rejected

REASON = "dlq.reason"
DETAIL = "dlq.detail"
SOURCE_TOPIC = "dlq.source.topic"
SOURCE_PARTITION = "dlq.source.partition"
SOURCE_OFFSET = "dlq.source.offset"
REJECTED_AT = "dlq.rejected_at"
_MAX_DETAIL = 512


def dlq_headers(message: Message, rejected: Rejected) -> list[tuple[str, bytes]]:
    return [
        (REASON, rejected.reason.encode()),
        (DETAIL, rejected.detail[:_MAX_DETAIL].encode()),
        (SOURCE_TOPIC, message.topic().encode()),
        (SOURCE_PARTITION, str(message.partition()).encode()),
        (SOURCE_OFFSET, str(message.offset()).encode()),
        (REJECTED_AT, datetime.now(UTC).isoformat().encode()),
    ]


class DeadLetters:
    """Produces rejects asynchronously; `flush()` must succeed before the sink commits the source offsets."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        self._failures: list[str] = []

    def send(self, message: Message, rejected: Rejected) -> None:
        self._producer.produce(self._topic, value=message.value(), key=message.key(),
                               headers=dlq_headers(message, rejected), on_delivery=self._delivered)
        self._producer.poll(0)

    def _delivered(self, error: object, _message: Message) -> None:
        if error is not None:
            self._failures.append(str(error))

    def flush(self, timeout: float = 30.0) -> None:
        """Wait for every dead letter to be acknowledged; raise if any was not."""
        try:
            remaining = self._producer.flush(timeout)
        except KafkaException as exc:
            raise Unavailable(f"dead-letter topic {self._topic} unreachable: {exc}") from None
        failures, self._failures = self._failures, []
        if remaining or failures:
            raise Unavailable(f"{remaining} dead letters unsent, {len(failures)} failed: {failures[:1]}")
