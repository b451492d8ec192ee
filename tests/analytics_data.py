"""Test data for the cost, query and API tests, stored through the sink's own `write(batch)` seam, so the raw
table, the rollups and the `gpus` inventory are exactly what production would hold."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from psycopg.types.json import Jsonb

from backend.config import Settings
from backend.telemetry.fields import COLUMNS
from backend.telemetry.sink.batch import Batch, GpuSeen
from backend.telemetry.sink.writer import PostgresWriter


@dataclass
class Gpu:
    uuid: str
    host: str
    index: int = 0
    model: str | None = "NVIDIA H100 80GB HBM3"
    labels: dict[str, str] = field(default_factory=dict)


def samples(gpu: Gpu, start: datetime, minutes: int, every_s: int = 30, **metrics: object) -> list[tuple]:
    """Rows every `every_s` seconds for `minutes`; a metric value may be a callable of the sample's offset (s)."""
    rows = []
    for offset in range(0, minutes * 60, every_s):
        values = {k: (v(offset) if callable(v) else v) for k, v in metrics.items()}
        rows.append((gpu, start + timedelta(seconds=offset), values))
    return rows


def store(settings: Settings, rows: Iterable[tuple], tokens: Iterable[tuple] = (), *, use_copy: bool = True) -> None:
    """Write (gpu, time, {metric: value}) rows and (time, gpu, served_model, interval_s, requests, prompt,
    completion, p50, p95) token rows (`use_copy=False`: with INSERT, for the WebAssembly TimescaleDB)."""
    batch = Batch()
    for gpu, ts, values in rows:
        batch.metric_rows.append((ts, gpu.uuid, gpu.host, gpu.index, *[values.get(c) for c in COLUMNS], None))
        if gpu.uuid in batch.gpus:
            batch.gpus[gpu.uuid].see(gpu.host, gpu.index, gpu.model, "550.54", gpu.labels, ts)
        else:
            batch.gpus[gpu.uuid] = GpuSeen(gpu.host, gpu.index, gpu.model, "550.54", gpu.labels, ts, ts)
    for ts, gpu, model, interval_s, requests, prompt, completion, p50, p95 in tokens:
        batch.token_rows.append((ts, gpu.host, gpu.uuid, model, interval_s, requests, prompt, completion, p50, p95,
                                 Jsonb({})))
    writer = PostgresWriter(settings, use_copy=use_copy)
    try:
        writer.write(batch)
    finally:
        writer.close()
