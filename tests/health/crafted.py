"""Crafted GPU histories for the health tests: in memory for the rules, or written into `gpu_metrics`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from backend.db.migrate import profile_of
from backend.health.history import GpuHistory, Sample
from backend.telemetry.sink.partitions import ensure_partitions

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"
HEALTHY = {"gpu_temp": 55.0, "memory_temp": 60.0, "power_usage": 350.0, "xid_errors": 0, "ecc_dbe_vol_total": 0,
           "clocks_event_reasons": 0, "thermal_violation": 0, "power_violation": 0, "pcie_replay_counter": 3}


def rows(count: int, *, end: datetime = NOW, step_s: float = 10.0,
         **series: Sequence[float | None] | float) -> list[tuple[datetime, dict[str, float | None]]]:
    """`count` samples ending at `end`; each keyword is a constant or a per-sample sequence (oldest first)."""
    out = []
    for i in range(count):
        values = dict(HEALTHY)
        for name, value in series.items():
            values[name] = value[i] if isinstance(value, Sequence) else value
        out.append((end - timedelta(seconds=step_s * (count - 1 - i)), values))
    return out


def history(samples: list[tuple[datetime, Mapping[str, float | None]]], *, model: str = H100, uuid: str = "GPU-1",
            week_ago: Mapping[str, float | None] | None = None) -> GpuHistory:
    return GpuHistory(uuid, "node-a", 0, model, [Sample(t, dict(v)) for t, v in samples], dict(week_ago or {}))


def store(conn: psycopg.Connection, uuid: str, samples: list[tuple[datetime, Mapping[str, float | None]]], *,
          host: str = "node-a", index: int = 0, model: str = H100) -> None:
    """Write samples into `gpu_metrics` (creating day partitions on the postgres profile) and the GPU into `gpus`;
    plain INSERTs, so this works on the WebAssembly TimescaleDB too."""
    if profile_of(conn) == "postgres":
        ensure_partitions(conn, {t.date() for t, _ in samples})
    columns = sorted({name for _, values in samples for name in values})
    insert = sql.SQL("INSERT INTO gpu_metrics (time, gpu_uuid, host, gpu_index, {}) VALUES ({})").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(", ").join(sql.Placeholder() * (4 + len(columns))))
    with conn.cursor() as cur:
        cur.executemany(insert, [(t, uuid, host, index, *(v.get(c) for c in columns)) for t, v in samples])
    times = [t for t, _ in samples]
    conn.execute(
        """INSERT INTO gpus (gpu_uuid, host, gpu_index, model, driver, labels, first_seen, last_seen)
           VALUES (%s, %s, %s, %s, '550.90.07', %s, %s, %s)
           ON CONFLICT (gpu_uuid) DO UPDATE SET last_seen = greatest(gpus.last_seen, EXCLUDED.last_seen)""",
        (uuid, host, index, model, Jsonb({}), min(times), max(times)),
    )
