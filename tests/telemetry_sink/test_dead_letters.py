"""Poison messages go to the dead-letter topic with reasons and origin; their valid neighbours are stored. A
reject too large to copy is cut to fit, a full producer queue is waited out, and offsets never pass a dead letter
the broker has not acknowledged."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
from confluent_kafka import Message

from backend.embedded.tansu import TansuBroker
from backend.errors import Unavailable
from backend.identity import SYSTEM
from backend.telemetry import pipeline_status
from backend.telemetry.sink import consumer, dlq
from backend.telemetry.sink.consumer import Sink
from tests.telemetry_sink.conftest import (
    base_time,
    committed_offsets,
    count_rows,
    poison_messages,
    produce,
    read_topic,
    sample,
    token_usage,
    wait_for,
)


def test_poison_messages_dead_lettered_with_reasons(kafka_settings, db):
    t0 = base_time()
    poison = poison_messages(t0)
    interleaved: list[dict | bytes] = []
    for i, (value, _) in enumerate(poison):
        interleaved += [sample(t0 + timedelta(seconds=i), gpu=1), value]
    produce(kafka_settings, kafka_settings.telemetry_topic, interleaved, key="poison")
    produce(kafka_settings, kafka_settings.token_usage_topic,
            [token_usage(t0), {**token_usage(t0, gpu=2), "requests": -5}])

    summary = Sink(kafka_settings, until_idle=1.5).run()

    assert count_rows(db) == len(poison)  # the valid neighbours, and not one poison row
    assert count_rows(db, "token_usage") == 1
    assert summary.dead_lettered == len(poison) + 1

    letters, total = pipeline_status.recent_dead_letters(SYSTEM, limit=100, settings=kafka_settings)
    assert total == len(poison) + 1 and len(letters) == total
    by_reason: dict[str, list] = {}
    for letter in letters:
        by_reason.setdefault(letter.reason, []).append(letter)
    expected: dict[str, int] = {}
    for _, reason in poison:
        expected[reason] = expected.get(reason, 0) + 1
    expected["schema"] += 1  # the negative token count
    assert {r: len(v) for r, v in by_reason.items()} == expected

    originals = {value for value, _ in poison}
    for letter in letters:
        assert letter.source_topic in (kafka_settings.telemetry_topic, kafka_settings.token_usage_topic)
        assert letter.source_partition is not None and letter.source_offset is not None and letter.detail
    raw = [m for m in letters if m.source_topic == kafka_settings.telemetry_topic]
    assert all(m.key == "poison" for m in raw)
    assert {m.size for m in raw} == {len(v) for v in originals}
    nul = by_reason["db_rejected"][0]
    assert nul.detail.startswith("22") and "nul" in nul.preview  # SQLSTATE class 22: data exception
    assert "gpu_temp" in by_reason["out_of_range"][0].detail



def _headers(letter: Message) -> dict[str, str]:
    return {name: value.decode() for name, value in letter.headers() or []}


def _record_bytes(letter: Message) -> int:
    """What librdkafka and the broker count for one record (varints at their widest) plus its batch header."""
    headers = sum(len(name) + len(value) + 10 for name, value in letter.headers() or [])
    return 61 + 36 + len(letter.key() or b"") + len(letter.value() or b"") + headers


def _interleave(t0: datetime, rejects: list[bytes], valid_per_reject: int = 1) -> list[dict | bytes]:
    messages: list[dict | bytes] = []
    for i, reject in enumerate(rejects):
        messages += [sample(t0 + timedelta(seconds=i * valid_per_reject + n), gpu=1) for n in range(valid_per_reject)]
        messages.append(reject)
    return messages


def test_megabyte_reject_is_dead_lettered_cut_to_fit_and_ingest_goes_on(kafka_settings, db):
    t0 = base_time()
    huge = b"x" * 999_900
    produce(kafka_settings, kafka_settings.telemetry_topic, [*_interleave(t0, [huge], 10),
                                                             *(sample(t0 + timedelta(minutes=1, seconds=i), gpu=1)
                                                               for i in range(10))], key="huge")

    summary = Sink(kafka_settings, until_idle=1.5).run()  # returns: the sink neither crashed nor stalled

    assert count_rows(db) == 20
    assert summary.dlq_reasons == {"too_large": 1}
    assert sum(c or 0 for c in committed_offsets(kafka_settings).values()) == 21
    bootstrap = kafka_settings.kafka_bootstrap_servers
    [source] = [m for m in read_topic(bootstrap, kafka_settings.telemetry_topic) if m.key() == b"huge"]
    [letter] = read_topic(bootstrap, kafka_settings.dlq_topic)
    headers = _headers(letter)
    assert headers[dlq.REASON] == "too_large" and headers[dlq.DETAIL].startswith("oversized")
    assert headers[dlq.ORIGINAL_SIZE] == "999900"
    assert headers[dlq.ORIGINAL_SHA256] == hashlib.sha256(huge).hexdigest()
    assert (headers[dlq.SOURCE_TOPIC], headers[dlq.SOURCE_PARTITION], headers[dlq.SOURCE_OFFSET]) == (
        kafka_settings.telemetry_topic, str(source.partition()), str(source.offset()))
    assert letter.key() == b"huge" and huge.startswith(letter.value()) and len(letter.value()) > 990_000
    assert _record_bytes(letter) <= 1_000_000  # fits librdkafka's default message.max.bytes, and so Kafka's
    [shown], _ = pipeline_status.recent_dead_letters(SYSTEM, settings=kafka_settings)
    assert (shown.reason, shown.size) == ("too_large", 999_900)  # the Pipeline page shows the original's size


@pytest.mark.parametrize("limit", [{"sink_dlq_max_message_bytes": 40_000},
                                   {"kafka_client_config": {"message.max.bytes": "40000"}}],
                         ids=["setting", "producer-config"])
def test_dead_letter_cap_follows_the_setting_or_the_producer_limit(kafka_settings, db, limit):
    fits, too_big, long_key = b"f" * 39_000, b"t" * 45_000, "K" * 50_000
    produce(kafka_settings, kafka_settings.telemetry_topic, _interleave(base_time(), [fits, too_big]), key="cap")
    produce(kafka_settings, kafka_settings.telemetry_topic, [b"k" * 10], key=long_key)

    summary = Sink(kafka_settings.model_copy(update=limit), until_idle=1.5).run()

    assert count_rows(db) == 2 and summary.dlq_reasons == {"invalid_json": 1, "too_large": 2}
    letters = {m.value()[:1]: m for m in read_topic(kafka_settings.kafka_bootstrap_servers, kafka_settings.dlq_topic)}
    whole, cut, key_cut = letters[b"f"], letters[b"t"], letters[b"k"]
    assert whole.value() == fits and _headers(whole)[dlq.REASON] == "invalid_json"
    assert dlq.ORIGINAL_SIZE not in _headers(whole)
    assert _headers(cut)[dlq.REASON] == "too_large" and _headers(cut)[dlq.ORIGINAL_SIZE] == "45000"
    assert too_big.startswith(cut.value()) and 38_000 < _record_bytes(cut) <= 40_000
    headers = _headers(key_cut)
    assert key_cut.value() == b"k" * 10 and key_cut.key() == long_key[:dlq.KEPT_KEY_BYTES].encode()
    assert (headers[dlq.REASON], headers[dlq.ORIGINAL_SIZE], headers[dlq.ORIGINAL_KEY_SIZE]) == (
        "too_large", "10", "50000")
    assert headers[dlq.ORIGINAL_KEY_SHA256] == hashlib.sha256(long_key.encode()).hexdigest()


def test_full_dead_letter_queue_is_back_pressure_not_a_crash(kafka_settings, db):
    poison = [b"not json %d" % i for i in range(30)]
    produce(kafka_settings, kafka_settings.telemetry_topic, _interleave(base_time(), poison), key="poison")
    one_at_a_time = kafka_settings.model_copy(update={"kafka_client_config": {"queue.buffering.max.messages": "1"}})

    summary = Sink(kafka_settings, until_idle=1.5, dead_letter_settings=one_at_a_time).run()

    assert count_rows(db) == 30 and summary.dlq_reasons == {"invalid_json": 30}
    letters = read_topic(kafka_settings.kafka_bootstrap_servers, kafka_settings.dlq_topic)
    assert sorted(m.value() for m in letters) == sorted(poison)


def test_offsets_wait_for_dead_letters_the_broker_has_not_acknowledged(kafka_settings, db):
    t0 = base_time()
    produce(kafka_settings, kafka_settings.telemetry_topic, _interleave(t0, [b"not json"], 10), key="poison")
    dlq_broker = TansuBroker()  # its port stays dead until the broker starts: every dead letter fails until then
    unreachable = kafka_settings.model_copy(update={
        "kafka_bootstrap_servers": dlq_broker.bootstrap,
        "kafka_client_config": {"message.timeout.ms": "1000", "reconnect.backoff.max.ms": "200"}})
    sink = Sink(kafka_settings, until_idle=2.0, dead_letter_settings=unreachable)
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(sink.run)
        try:
            wait_for(lambda: count_rows(db) == 10, timeout=60)
            wait_for(lambda: (sink.metrics.registry.get_sample_value("sink_dlq_retries_total") or 0) >= 2,
                     timeout=60)  # refused twice: a letter dropped after its first refusal would be committed by now
            during_outage = committed_offsets(kafka_settings)
            dlq_broker.start()
            summary = running.result(timeout=120)
            letters = read_topic(dlq_broker.bootstrap, kafka_settings.dlq_topic)
        finally:
            sink.stop()
            dlq_broker.stop()

    assert [m.value() for m in letters] == [b"not json"]
    headers = _headers(letters[0])
    held = during_outage[(headers[dlq.SOURCE_TOPIC], int(headers[dlq.SOURCE_PARTITION]))]
    assert held is None or held <= int(headers[dlq.SOURCE_OFFSET])  # nothing committed past the letter
    assert summary.dlq_reasons == {"invalid_json": 1} and count_rows(db) == 10
    assert sum(c or 0 for c in committed_offsets(kafka_settings).values()) == 11


def test_stop_during_a_dead_letter_outage_exits_without_committing_past_it(kafka_settings, db, monkeypatch):
    monkeypatch.setattr(consumer, "STOP_GRACE_S", 1.0)
    produce(kafka_settings, kafka_settings.telemetry_topic, _interleave(base_time(), [b"not json"], 5), key="poison")
    never_started = TansuBroker()
    sink = Sink(kafka_settings, dead_letter_settings=kafka_settings.model_copy(update={
        "kafka_bootstrap_servers": never_started.bootstrap, "kafka_client_config": {"message.timeout.ms": "500"}}))
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(sink.run)
        try:
            wait_for(lambda: (sink.metrics.registry.get_sample_value("sink_dlq_retries_total") or 0) >= 1,
                     timeout=60)
        finally:
            sink.stop()
        with pytest.raises(Unavailable, match="unacknowledged dead letters"):
            running.result(timeout=60)

    [poison] = [m for m in read_topic(kafka_settings.kafka_bootstrap_servers, kafka_settings.telemetry_topic)
                if m.key() == b"poison"]
    held = committed_offsets(kafka_settings)[(poison.topic(), poison.partition())]
    assert held is None or held <= poison.offset()
