"""The one-pass decode of catalog-only samples accepts and refuses exactly what the general decode does, with the
same values, extra metrics and reasons (`validate.py`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from backend.telemetry.fields import BY_COLUMN, COLUMNS
from backend.telemetry.sink import validate
from backend.telemetry.sink.validate import Rejected, TimeWindow, decode_gpu_sample
from tests.telemetry_sink.conftest import base_time, poison_messages, sample

T0 = base_time()
WINDOW = TimeWindow(oldest=datetime.now(UTC) - timedelta(days=30), latest=datetime.now(UTC) + timedelta(minutes=5))


def _variant(**changes: object) -> bytes:
    return orjson.dumps({**sample(T0), **changes})


def _raw(metrics: str) -> bytes:
    """A sample whose metrics object is the JSON text `metrics` as written (duplicate names, nulls)."""
    good = orjson.dumps({**sample(T0), "metrics": {"gpu_temp": 0}}).decode()
    return good.replace('{"gpu_temp":0}', metrics).encode()


MESSAGES = [
    *(value for value, _ in poison_messages(T0)),
    orjson.dumps(sample(T0)),
    orjson.dumps(sample(T0, gpu_temp=61, xid_errors=3)),  # an int for a float column
    _variant(metrics={"xid_errors": 12.0}),  # a whole number written as a float: the general way takes it
    _variant(metrics={"xid_errors": 12.5}),
    _variant(metrics={"gpu_temp": 50.0, "nvlink_l0_tx_bytes": 9, "fan_speed": 40.5}),  # metrics without a column
    _variant(metrics={"nvlink_l0_tx_bytes": 9}),
    _variant(metrics={}),
    _variant(metrics={"total_energy_consumption": 2**63}),
    _variant(metrics={"total_energy_consumption": 2**63 - 1}),
    _variant(metrics={"gpu_util": 101}),
    _variant(model="m" * 129),
    _variant(schema="token.usage.v1"),
    _raw('{"gpu_temp":null}'),
    _raw('{"gpu_temp":null,"power_usage":100}'),
    _raw('{"gpu_temp":40,"gpu_temp":41}'),
    _raw('{"gpu_temp":40,"gpu_temp":900}'),
    _raw('{"gpu_temp":"40"}'),
    None,
]


def _outcome(decode, value: bytes | None):  # type: ignore[no-untyped-def]
    try:
        sample_, values, extra = decode(value, WINDOW)
    except Rejected as rejected:
        return "rejected", rejected.reason, rejected.detail
    return "stored", sample_.ts, sample_.gpu_uuid, sample_.labels, values, extra


@pytest.mark.parametrize("value", MESSAGES, ids=range(len(MESSAGES)))
def test_one_pass_decode_agrees_with_the_general_decode(value):
    assert _outcome(decode_gpu_sample, value) == _outcome(validate._decode_general, value)


def test_catalog_only_samples_take_the_one_pass_way_and_keep_every_value():
    metrics = sample(T0, gpu_temp=61.5)["metrics"]
    assert set(metrics) == set(BY_COLUMN)
    decoded, values, extra = decode_gpu_sample(_variant(metrics=metrics), WINDOW)
    assert isinstance(decoded, validate._CatalogSample)
    assert values == tuple(metrics[c] for c in COLUMNS) and extra == {}
    with_extra, _, extra = decode_gpu_sample(_variant(metrics={**metrics, "fan_speed": 40.5}), WINDOW)
    assert not isinstance(with_extra, validate._CatalogSample) and extra == {"fan_speed": 40.5}


def test_both_ways_saw_both_outcomes():
    """The cases above are not all of one kind: each way stored some and refused some."""
    outcomes = {_outcome(decode_gpu_sample, v)[0] for v in MESSAGES}
    assert outcomes == {"stored", "rejected"}
