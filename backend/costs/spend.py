"""GPU-hours and spend from telemetry presence, grouped by host, model, label, GPU or day, with idle cost.

A GPU-minute counts when the 1-minute rollup has samples for it (so collectors must report at least once a
minute; DCGM's default is every 30 s). Each minute is priced at the catalog price in effect at that minute for
the GPU's model and pricing kind. Idle follows OpenCost: idle cost = asset cost − used cost, where a minute is
idle when its average `gpu_util` is below the threshold (`COST_IDLE_UTIL_THRESHOLD`, percent). Minutes of GPUs
with no catalog price are counted as unpriced GPU-hours rather than silently costed at zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from backend.costs.catalog import KIND_OF_GPU_SQL
from backend.queries.catalog import BadParameter
from backend.queries.timeseries import check_range

PRICED_RUNS = f"""
    WITH bounds AS (
        SELECT coalesce(array_agg(DISTINCT t ORDER BY t), '{{}}') AS at
        FROM gpu_prices, LATERAL (VALUES (effective_from), (effective_to)) v(t)
        WHERE t > %(start)s AND t < %(end)s),
    stored AS (
        SELECT c.hour FROM gpu_minutes_1h_trusted c, bounds
        WHERE c.hour >= %(start)s AND c.hour + interval '1 hour' <= %(end)s
          AND (%(idle)s::float8 IS NULL OR c.idle_threshold = %(idle)s::float8)
          AND width_bucket(c.hour, bounds.at) = width_bucket(c.hour + interval '59 minutes', bounds.at)),
    spans AS (
        SELECT greatest(min(h), %(start)s) AS lo, least(max(h) + interval '1 hour', %(end)s) AS hi
        FROM (SELECT h, h - row_number() OVER (ORDER BY h) * interval '1 hour' AS island
              FROM generate_series(date_trunc('hour', %(start)s::timestamptz, 'UTC'), %(end)s::timestamptz,
                                   interval '1 hour') h
              WHERE h < %(end)s AND NOT EXISTS (SELECT 1 FROM stored WHERE stored.hour = h)) gaps
        GROUP BY island),
    minutes AS (
        SELECT m.gpu_uuid, m.host, m.hour AS bucket, m.minutes, m.idle_minutes
        FROM gpu_minutes_1h m JOIN stored USING (hour)
        UNION ALL
        SELECT r.gpu_uuid, r.host, r.bucket, 1, CASE WHEN r.gpu_util_avg < %(idle)s::float8 THEN 1 ELSE 0 END
        FROM spans CROSS JOIN LATERAL (  -- OFFSET 0: planned on its own, an index range scan per span
            SELECT gpu_uuid, host, bucket, gpu_util_avg FROM gpu_metrics_1m
            WHERE bucket >= spans.lo AND bucket < spans.hi AND samples > 0 OFFSET 0) r),
    runs AS (
        SELECT x.gpu_uuid, x.host, date_trunc('day', x.bucket, 'UTC') AS day, min(x.bucket) AS first_bucket,
               sum(x.minutes)::bigint AS minutes, sum(x.idle_minutes)::bigint AS idle_minutes
        FROM minutes x, bounds
        GROUP BY x.gpu_uuid, x.host, 3, width_bucket(x.bucket, bounds.at))
    SELECT runs.*, g.model, g.labels, p.usd_per_gpu_hour AS price
    FROM runs
    JOIN gpus g ON g.gpu_uuid = runs.gpu_uuid
    LEFT JOIN gpu_prices p
      ON lower(p.gpu_model) = lower(g.model)
     AND p.pricing_kind = {KIND_OF_GPU_SQL}
     AND p.effective_from <= runs.first_bucket AND (p.effective_to IS NULL OR runs.first_bucket < p.effective_to)"""
"""GPU-minutes present in [start, end), counted per GPU, host, UTC day and stretch between price changes (so
one price applies to each run), with the price per GPU-hour that applied (NULL: unpriced); `idle_minutes` count the
minutes whose average gpu_util is below %(idle)s (NULL: not wanted, any precomputed hour serves, idle counts are
meaningless). Complete hours come precomputed from `gpu_minutes_1h` when trusted at that threshold and one price
holds throughout them (backend/telemetry/gpu_minutes.py), every other minute from the 1-minute rollups: the same
counts either way, so the answer never depends on how far the precomputation got. Counting before pricing keeps the
join and the exact numeric arithmetic to a few rows per GPU instead of one per minute."""

_KEYS: dict[str, str] = {
    "total": "'total'",
    "host": "host",
    "model": "coalesce(model, '(unknown model)')",
    "gpu": "gpu_uuid",
    "day": "to_char(day, 'YYYY-MM-DD')",
}
GROUPS = (*_KEYS, "label:<name>")
_LABEL = re.compile(r"[A-Za-z0-9_.\-/]{1,64}")


@dataclass(frozen=True)
class CostRow:
    key: str
    gpus: int
    gpu_hours: float
    idle_gpu_hours: float
    unpriced_gpu_hours: float
    cost_usd: float
    idle_cost_usd: float
    used_cost_usd: float
    usd_per_gpu_hour: float | None
    """Average price over the priced GPU-hours of this group."""


@dataclass(frozen=True)
class CostSummary:
    start: datetime
    end: datetime
    group_by: str
    idle_threshold_pct: float
    rows: list[CostRow]
    total: CostRow


def _key_sql(group_by: str) -> tuple[sql.Composable, dict[str, str]]:
    if group_by.startswith("label:"):
        label = group_by.removeprefix("label:")
        if not _LABEL.fullmatch(label):
            raise BadParameter("group_by", "name a label after 'label:' (letters, digits, '_', '-', '.', '/'), "
                                           "e.g. label:team")
        return sql.SQL("coalesce(labels->>%(label)s, '(none)')"), {"label": label}
    if group_by not in _KEYS:
        raise BadParameter("group_by", f"choose one of {', '.join(GROUPS)}")
    return sql.SQL(_KEYS[group_by]), {}


def cost_summary(
    conn: psycopg.Connection, start: datetime, end: datetime, *, group_by: str = "host",
    idle_threshold_pct: float = 5.0,
) -> CostSummary:
    """GPU-hours, spend, idle and used cost in [start, end) per group, largest spend first, plus the total."""
    start, end = check_range(start, end)
    if not 0 <= idle_threshold_pct <= 100:
        raise BadParameter("idle_threshold_pct", "must be between 0 and 100")
    key, extra = _key_sql(group_by)
    query = sql.SQL(
        """SELECT key, count(DISTINCT gpu_uuid) AS gpus, coalesce(sum(minutes), 0)::bigint AS minutes,
                  coalesce(sum(idle_minutes), 0)::bigint AS idle_minutes,
                  coalesce(sum(minutes) FILTER (WHERE price IS NULL), 0)::bigint AS unpriced_minutes,
                  coalesce(sum(price * minutes), 0) / 60 AS cost,
                  coalesce(sum(price * idle_minutes), 0) / 60 AS idle_cost
           FROM (SELECT {key} AS key, * FROM ({runs}) priced) m
           GROUP BY GROUPING SETS ((key), ()) ORDER BY grouping(key), cost DESC, key"""
    ).format(runs=sql.SQL(PRICED_RUNS), key=key)  # type: ignore[arg-type]
    rows = conn.execute(query, {"start": start, "end": end, "idle": idle_threshold_pct, **extra}).fetchall()
    parsed = [_row(r) for r in rows]
    grouped = [r for r, raw in zip(parsed, rows, strict=True) if raw["key"] is not None]
    total = next((r for r, raw in zip(parsed, rows, strict=True) if raw["key"] is None), None)
    return CostSummary(start, end, group_by, idle_threshold_pct, grouped, _as_total(total))


def _row(r: dict) -> CostRow:
    cost, idle = float(r["cost"]), float(r["idle_cost"])
    priced_hours = (r["minutes"] - r["unpriced_minutes"]) / 60
    return CostRow(
        key=r["key"] if r["key"] is not None else "total", gpus=r["gpus"], gpu_hours=r["minutes"] / 60,
        idle_gpu_hours=r["idle_minutes"] / 60, unpriced_gpu_hours=r["unpriced_minutes"] / 60, cost_usd=cost,
        idle_cost_usd=idle, used_cost_usd=cost - idle,
        usd_per_gpu_hour=cost / priced_hours if priced_hours else None,
    )


def _as_total(row: CostRow | None) -> CostRow:
    return row or CostRow("total", 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None)
