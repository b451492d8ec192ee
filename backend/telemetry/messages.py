"""The one contract of the telemetry topics, `gpu.metrics.v1` and `token.usage.v1`: producers encode these
structs and the sink decodes them, constraints included.

msgspec encodes them several times faster than building dicts for `json.dumps`, and the constraints (lengths,
ranges, patterns) cost nothing on encode: they are checked in C when the sink decodes. The JSON Schemas in
`backend/telemetry/schemas/` are generated from these structs (`json_schema`), and a test keeps them equal. Every
message is keyed by `gpu_uuid` so that one GPU's samples stay in order on one partition.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

GPU_METRICS = "gpu.metrics.v1"
TOKEN_USAGE = "token.usage.v1"

Source = Literal["simulator", "nvml", "dcgm", "csv"]
Number = int | float

_METRIC_NAME = re.compile(r"[a-z][a-z0-9_]{0,95}")
_INVALID_CHARS = re.compile(r"[^a-z0-9_]")

M = msgspec.Meta
Host = Annotated[str, M(min_length=1, max_length=253)]
GpuUuid = Annotated[str, M(pattern=r"^(GPU|MIG)-[0-9A-Za-z-]{4,}$", max_length=96)]
Labels = Annotated[dict[str, Annotated[str, M(max_length=256)]], M(max_length=64)]
Timestamp = Annotated[datetime, M(tz=True, description="RFC 3339 time with offset (UTC: Z)")]
Metrics = Annotated[dict[str, Number], M(
    min_length=1, max_length=512,
    description="column name of backend/telemetry/fields.py (or any other DCGM field, lower-cased without its "
                "DCGM_FI_DEV_/DCGM_FI_PROF_ prefix) → number; names without a column are kept in gpu_metrics.extra",
    # checked by the sink for names outside the catalog only: a regex per key in the decoder would cost more than
    # the rest of the decode
    extra_json_schema={"propertyNames": {"pattern": f"^{_METRIC_NAME.pattern}$"}})]


class GpuSample(msgspec.Struct, tag_field="schema", tag=GPU_METRICS, kw_only=True, omit_defaults=True,
                forbid_unknown_fields=True):
    """One GPU at one instant."""

    ts: Timestamp
    host: Host
    gpu_index: Annotated[int, M(ge=0, le=255)]
    gpu_uuid: GpuUuid
    metrics: Metrics
    model: Annotated[str, M(max_length=128)] | None = None
    driver: Annotated[str, M(max_length=64)] | None = None
    source: Source | None = None
    labels: Labels = msgspec.field(default_factory=dict)


class TokenUsage(msgspec.Struct, tag_field="schema", tag=TOKEN_USAGE, kw_only=True, omit_defaults=True,
                 forbid_unknown_fields=True):
    """Tokens served by one model on one GPU over the `interval_s` seconds ending at `ts`."""

    ts: Timestamp
    host: Host
    gpu_uuid: GpuUuid
    served_model: Annotated[str, M(min_length=1, max_length=256)]
    interval_s: Annotated[float, M(gt=0, le=86400)]
    requests: Annotated[int, M(ge=0)]
    prompt_tokens: Annotated[int, M(ge=0)]
    completion_tokens: Annotated[int, M(ge=0)]
    latency_ms_p50: Annotated[float, M(ge=0)] | None = None
    latency_ms_p95: Annotated[float, M(ge=0)] | None = None
    labels: Labels = msgspec.field(default_factory=dict)


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
    return _METRIC_NAME.fullmatch(name) is not None


def finite(metrics: dict[str, Number]) -> dict[str, Number]:
    """Drop NaN and infinities: JSON cannot carry them and no reader could use them."""
    return {k: v for k, v in metrics.items() if not (isinstance(v, float) and not math.isfinite(v))}


_TOPICS: dict[str, type[GpuSample] | type[TokenUsage]] = {GPU_METRICS: GpuSample, TOKEN_USAGE: TokenUsage}


def json_schema(topic: str) -> dict[str, Any]:
    """The JSON Schema of a topic's messages, generated from its struct. `schema` (the tag) is always written by
    our producers but optional on input, as the sink accepts it."""
    struct = _TOPICS[topic]
    body = msgspec.json.schema(struct)["$defs"][struct.__name__]
    body["required"] = [name for name in body["required"] if name != "schema"]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": topic} | body | {
        "description": f"Kafka topic {topic}, keyed by gpu_uuid. {body['description']}"}


def schema_file(topic: str) -> str:
    """The text of `backend/telemetry/schemas/<topic>.json` as generated; `write_schemas` writes it."""
    return json.dumps(json_schema(topic), indent=2, ensure_ascii=False) + "\n"


def write_schemas(directory: Path | None = None) -> list[Path]:
    """Regenerate the JSON Schema files (after changing a struct above)."""
    directory = directory or Path(str(resources.files("backend.telemetry.schemas")))
    written = []
    for topic in _TOPICS:
        path = directory / f"{topic}.json"
        path.write_text(schema_file(topic))
        written.append(path)
    return written
