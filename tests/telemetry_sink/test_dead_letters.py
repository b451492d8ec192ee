"""Poison messages go to the dead-letter topic with reasons and origin; their valid neighbours are stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import orjson

from backend.identity import SYSTEM
from backend.telemetry import pipeline_status
from backend.telemetry.sink.consumer import Sink
from backend.telemetry.sink.validate import MAX_MESSAGE_BYTES
from tests.telemetry_sink.conftest import base_time, count_rows, produce, sample, token_usage


def _poison(t0: datetime) -> list[tuple[bytes, str]]:
    """(message bytes, expected reason)."""
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


def test_poison_messages_dead_lettered_with_reasons(kafka_settings, db):
    t0 = base_time()
    poison = _poison(t0)
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

