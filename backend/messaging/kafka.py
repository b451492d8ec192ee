"""Kafka clients built from settings. Every producer, consumer and admin client is made here so that
production security settings (SASL/SSL) and broker quirks are handled once."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from backend.config import Settings, get_settings

log = logging.getLogger(__name__)


def client_config(settings: Settings | None = None) -> dict[str, Any]:
    """Connection settings shared by every client: bootstrap servers plus the pass-through security options."""
    settings = settings or get_settings()
    config: dict[str, Any] = {"bootstrap.servers": settings.require_kafka()}
    optional = {
        "security.protocol": settings.kafka_security_protocol,
        "sasl.mechanism": settings.kafka_sasl_mechanism,
        "sasl.username": settings.kafka_sasl_username,
        "sasl.password": settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None,
        "ssl.ca.location": settings.kafka_ssl_ca_location,
    }
    config.update({k: v for k, v in optional.items() if v})
    config.update(settings.kafka_client_config)
    return config


def ensure_topics(
    names: Iterable[str], settings: Settings | None = None, *, partitions: int | None = None, timeout: float = 15.0
) -> dict[str, int]:
    """Create topics that do not exist yet; returns each topic's partition count. Explicit creation matters: tansu
    auto-creates with 4 partitions."""
    settings = settings or get_settings()
    names = list(dict.fromkeys(names))
    admin = AdminClient(client_config(settings))
    existing = admin.list_topics(timeout=timeout).topics
    wanted = [
        NewTopic(name, num_partitions=partitions or settings.kafka_partitions,
                 replication_factor=settings.kafka_replication_factor)
        for name in names
        if name not in existing
    ]
    if wanted:
        for name, future in admin.create_topics(wanted, operation_timeout=timeout).items():
            try:
                future.result(timeout)
                log.info("created topic %s", name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
    created = {topic.topic: topic.num_partitions for topic in wanted}
    return {name: created[name] if name in created else len(existing[name].partitions) for name in names}


def make_producer(settings: Settings | None = None, **overrides: Any) -> Producer:
    """An idempotent producer (per-key order, no duplicates from retries)."""
    config = client_config(settings) | {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "batch.num.messages": 10000,
    }
    return Producer(config | overrides)


def make_consumer(group_id: str, settings: Settings | None = None, **overrides: Any) -> Consumer:
    """A consumer with manual commits. Session timings suit both Kafka and tansu (whose joins wait
    about half of `session.timeout.ms`)."""
    config = client_config(settings) | {
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        "isolation.level": "read_committed",
    }
    return Consumer(config | overrides)
