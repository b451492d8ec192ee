"""The telemetry contract (`backend/telemetry/messages.py`) enforced at the sink.

msgspec decodes and checks the contract's types, required keys, lengths, patterns and the catalog's plausible
ranges (counters ≥ 0) in C; it was the fastest of msgspec, pydantic and orjson + fastjsonschema (docs/benchmarks.md,
Sink). A message whose metrics are all catalog columns — nearly every one — decodes in one pass straight into a
struct of those columns (no dict of metrics is built: half the cost of decoding). Any other message (a metric
without a column, a whole number given as 12.0, or anything invalid) is decoded again the general way, which keeps
the extra metrics and says exactly what is wrong, so both ways accept and refuse the same messages. Python only
checks the names of metrics without a column and the timestamp window. JSON cannot carry NaN or Infinity, and
msgspec refuses numbers that overflow to infinity, so every decoded number is finite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import msgspec

from backend.telemetry.fields import BY_COLUMN, FIELDS
from backend.telemetry.messages import GpuSample, TokenUsage, is_metric_name

MAX_MESSAGE_BYTES = 64 * 1024
BIGINT_MAX = 2**63 - 1
class Rejected(Exception):
    """A message that breaks the contract; `reason` is a short stable code, `detail` says what exactly."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class TimeWindow:
    """Timestamps accepted: not before `oldest` (retention), not after `latest` (clock skew allowance)."""

    oldest: datetime
    latest: datetime

    def check(self, ts: datetime) -> None:
        if ts > self.latest:
            raise Rejected("ts_future", f"ts {ts.isoformat()} is after {self.latest.isoformat()}")
        if ts < self.oldest:
            raise Rejected("ts_too_old", f"ts {ts.isoformat()} is before the retention start {self.oldest.isoformat()}")


_gpu_decoder = msgspec.json.Decoder(GpuSample)
_token_decoder = msgspec.json.Decoder(TokenUsage)


def _decode(decoder: msgspec.json.Decoder, value: bytes | None):  # type: ignore[no-untyped-def]
    if value is None:
        raise Rejected("invalid_json", "empty message")
    if len(value) > MAX_MESSAGE_BYTES:
        raise Rejected("oversized", f"{len(value)} bytes, limit {MAX_MESSAGE_BYTES}")
    try:
        return decoder.decode(value)
    except msgspec.ValidationError as exc:
        raise Rejected("schema", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise Rejected("invalid_json", str(exc)) from None


def _catalog_struct() -> type[msgspec.Struct]:
    """A struct with one range-checked field per catalog column, None where absent (an explicit null is refused,
    as the contract does): msgspec checks ranges in C and `astuple` yields the values in column order. No other
    names: the one-pass decode leaves messages with extra metrics to the general way. Never in a reference cycle,
    so not tracked by the garbage collector (`gc=False`), like the sample that holds it."""
    fields = []
    for f in FIELDS:
        integer = f.sql_type == "bigint"
        bounds: dict[str, float] = {}
        if f.minimum is not None:
            bounds["ge"] = int(f.minimum) if integer else f.minimum
        if f.maximum is not None or integer:
            bounds["le"] = (int(f.maximum) if f.maximum is not None else BIGINT_MAX) if integer else f.maximum
        fields.append((f.column, Annotated[int if integer else float, msgspec.Meta(**bounds)], None))
    return msgspec.defstruct("CatalogMetrics", fields, forbid_unknown_fields=True, gc=False)


_Catalog = _catalog_struct()


class _CatalogSample(GpuSample, gc=False):
    """A gpu.metrics.v1 message whose metrics are all catalog columns, decoded in one pass."""

    metrics: _Catalog


_catalog_decoder = msgspec.json.Decoder(_CatalogSample)
_KNOWN = frozenset(BY_COLUMN)
_AT = re.compile(r"at `\$\.([a-z0-9_]+)`")


def decode_gpu_sample(value: bytes | None, window: TimeWindow) -> tuple[GpuSample, tuple, dict]:
    """Decode and check one gpu.metrics.v1 message; returns the sample, the catalog columns' values in
    `fields.COLUMNS` order (None where absent) and the metrics without a column (for `extra`)."""
    try:
        sample = _decode(_catalog_decoder, value)
    except Rejected:  # the general way says exactly what is wrong, or keeps the metrics without a column
        return _decode_general(value, window)
    values = msgspec.structs.astuple(sample.metrics)
    if values.count(None) == len(values):  # no metric at all: the contract wants one, the general way says so
        return _decode_general(value, window)
    window.check(sample.ts)
    return sample, values, {}


def _decode_general(value: bytes | None, window: TimeWindow) -> tuple[GpuSample, tuple, dict]:
    """Any valid message, its metrics without a column kept; for an invalid one, the exact reason."""
    sample: GpuSample = _decode(_gpu_decoder, value)
    window.check(sample.ts)
    metrics = sample.metrics
    try:
        known = msgspec.convert({k: v for k, v in metrics.items() if k in _KNOWN}, _Catalog, strict=False)
    except msgspec.ValidationError as exc:
        raise _range_error(metrics, str(exc)) from None
    extra = {name: number for name, number in metrics.items() if name not in _KNOWN}
    for name in extra:
        if not is_metric_name(name):
            raise Rejected("schema", f"metric name {name[:100]!r} must match ^[a-z][a-z0-9_]{{0,95}}$")
    return sample, msgspec.structs.astuple(known), extra


def _range_error(metrics: dict[str, float | int], message: str) -> Rejected:
    """Say why a catalog metric was refused, in the words an operator needs."""
    match = _AT.search(message)
    field = BY_COLUMN.get(match[1]) if match else None
    if field is None:
        return Rejected("schema", message)
    number = metrics[field.column]
    if field.kind == "counter" and number < 0:
        return Rejected("negative_counter", f"metrics.{field.column} = {number} (counters never go below 0)")
    if field.sql_type == "bigint" and number != int(number):
        return Rejected("schema", f"metrics.{field.column} = {number} must be a whole number")
    highest = "" if field.maximum is None else field.maximum
    return Rejected("out_of_range", f"metrics.{field.column} = {number} (plausible {field.minimum}..{highest})")


def decode_token_usage(value: bytes | None, window: TimeWindow) -> TokenUsage:
    """Decode and check one token.usage.v1 message."""
    usage: TokenUsage = _decode(_token_decoder, value)
    window.check(usage.ts)
    for name in ("requests", "prompt_tokens", "completion_tokens"):
        if getattr(usage, name) > BIGINT_MAX:
            raise Rejected("out_of_range", f"{name} does not fit 64 bits")
    return usage
