"""The wire model of the telemetry topics: `gpu.metrics.v1` and `token.usage.v1`.

The structs mirror `backend/telemetry/schemas/*.json` field for field; msgspec encodes them several times faster
than building dicts for `json.dumps`, which matters at hundreds of thousands of samples per second. Every message
is keyed by `gpu_uuid` so that one GPU's samples stay in order on one partition.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Literal

import msgspec

GPU_METRICS = "gpu.metrics.v1"
TOKEN_USAGE = "token.usage.v1"

Source = Literal["simulator", "nvml", "dcgm", "csv"]
Number = int | float

_METRIC_NAME = re.compile(r"^[a-z][a-z0-9_]{0,95}$")
_INVALID_CHARS = re.compile(r"[^a-z0-9_]")


class GpuSample(msgspec.Struct, tag_field="schema", tag=GPU_METRICS, kw_only=True, omit_defaults=True):
    """One GPU at one instant. `metrics` maps column names of `fields.py` (or other DCGM names) to numbers."""

    ts: datetime
    host: str
    gpu_index: int
    gpu_uuid: str
    metrics: dict[str, Number]
    model: str | None = None
    driver: str | None = None
    source: Source | None = None
    labels: dict[str, str] = msgspec.field(default_factory=dict)


class TokenUsage(msgspec.Struct, tag_field="schema", tag=TOKEN_USAGE, kw_only=True, omit_defaults=True):
    """Tokens served by one model on one GPU over the `interval_s` seconds ending at `ts`."""

    ts: datetime
    host: str
    gpu_uuid: str
    served_model: str
    interval_s: float
    requests: int
    prompt_tokens: int
    completion_tokens: int
    latency_ms_p50: float | None = None
    latency_ms_p95: float | None = None
    labels: dict[str, str] = msgspec.field(default_factory=dict)


Message = GpuSample | TokenUsage

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Message)


def encode(message: Message) -> bytes:
    """The JSON bytes put on the topic."""
    return _encoder.encode(message)


def key(message: Message) -> bytes:
    """The Kafka key: per-GPU ordering."""
    return message.gpu_uuid.encode()


def decode(data: bytes) -> Message:
    """Parse either message kind (by its `schema` tag); raises `msgspec.DecodeError` / `ValidationError`."""
    return _decoder.decode(data)


def metric_name(name: str) -> str:
    """A source's metric name made into a valid `metrics` key (lower case, `[a-z0-9_]`, starting with a letter)."""
    cleaned = _INVALID_CHARS.sub("_", name.lower())
    if not cleaned[:1].isalpha():
        cleaned = f"m_{cleaned}"
    return cleaned[:96]


def is_metric_name(name: str) -> bool:
    return _METRIC_NAME.match(name) is not None


def finite(metrics: dict[str, Number]) -> dict[str, Number]:
    """Drop NaN and infinities: JSON cannot carry them and no reader could use them."""
    return {k: v for k, v in metrics.items() if not (isinstance(v, float) and not math.isfinite(v))}
