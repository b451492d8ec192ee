"""One telemetry contract: the structs producers encode are the ones the sink decodes, and the JSON Schema files
are generated from them."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources

import msgspec
import pytest

from backend.telemetry import messages
from backend.telemetry.fields import COLUMNS
from backend.telemetry.messages import GPU_METRICS, TOKEN_USAGE, GpuSample, TokenUsage, encode, schema_file
from backend.telemetry.sink import validate
from backend.telemetry.sink.validate import Rejected, TimeWindow, decode_gpu_sample

WINDOW = TimeWindow(datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("topic", [GPU_METRICS, TOKEN_USAGE])
def test_schema_files_are_generated_from_the_structs(topic):
    stored = resources.files("backend.telemetry.schemas").joinpath(f"{topic}.json").read_text()
    assert stored == schema_file(topic), (
        "regenerate with: .venv/bin/python -c 'from backend.telemetry.messages import write_schemas; "
        "write_schemas()'")


def test_producer_and_sink_share_the_structs():
    assert validate.GpuSample is messages.GpuSample and validate.TokenUsage is messages.TokenUsage


def test_constraints_cost_nothing_on_encode_and_are_checked_on_decode():
    sample = GpuSample(ts=datetime(2026, 6, 1, tzinfo=UTC), host="h", gpu_index=0, gpu_uuid="GPU-abcd",
                       metrics={"gpu_temp": 40.0}, labels={"team": "x" * 300})
    wire = encode(sample)  # encoding does not validate: producers pay nothing for the constraints
    with pytest.raises(Rejected, match="schema"):
        decode_gpu_sample(wire, WINDOW)
    good = msgspec.structs.replace(sample, labels={"team": "ml"})
    decoded, values, extra = decode_gpu_sample(encode(good), WINDOW)
    identity = ("ts", "host", "gpu_index", "gpu_uuid", "model", "driver", "source", "labels")
    assert [getattr(decoded, name) for name in identity] == [getattr(good, name) for name in identity]
    assert values == tuple(good.metrics.get(column) for column in COLUMNS) and extra == {}


def test_the_schema_tag_is_written_always_and_optional_on_input():
    usage = TokenUsage(ts=datetime(2026, 6, 1, tzinfo=UTC), host="h", gpu_uuid="GPU-abcd", served_model="m",
                       interval_s=10, requests=1, prompt_tokens=2, completion_tokens=3)
    assert b'"schema":"token.usage.v1"' in encode(usage)
    untagged = encode(usage).replace(b'"schema":"token.usage.v1",', b"")
    assert validate.decode_token_usage(untagged, WINDOW) == usage
    with pytest.raises(Rejected, match="schema"):
        validate.decode_token_usage(encode(usage).replace(b"token.usage.v1", b"gpu.metrics.v1"), WINDOW)
