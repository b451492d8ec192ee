"""The Kafka adapter against the real broker: explicit topics, keyed produce, manual-commit consume."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from backend.messaging.kafka import client_config, ensure_topics, make_consumer, make_producer


def test_topics_created_with_configured_partitions_and_roundtrip(kafka_settings):
    topic = kafka_settings.telemetry_topic
    ensure_topics([topic, topic], kafka_settings)
    ensure_topics([topic], kafka_settings)  # idempotent
    meta = AdminClient(client_config(kafka_settings)).list_topics(topic, timeout=10)
    assert len(meta.topics[topic].partitions) == kafka_settings.kafka_partitions == 4

    producer = make_producer(kafka_settings)
    for i in range(20):
        producer.produce(topic, key=f"gpu-{i % 3}", value=f"{i}".encode())
    assert producer.flush(10) == 0

    consumer = make_consumer(kafka_settings.kafka_group_id, kafka_settings)
    consumer.subscribe([topic])
    seen: list[int] = []
    try:
        for _ in range(100):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                seen.append(int(msg.value()))
            if len(seen) == 20:
                break
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert sorted(seen) == list(range(20))


def test_security_settings_pass_through(kafka_settings, monkeypatch):
    from backend.settings_loader import load_settings

    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "hunter2-hunter2")
    monkeypatch.setenv("KAFKA_CLIENT_CONFIG", '{"client.id": "console"}')
    config = client_config(load_settings())
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.password"] == "hunter2-hunter2"
    assert config["client.id"] == "console"
    assert "hunter2" not in repr(load_settings())
