"""The spend query as it was before precomputed GPU-minutes (commit e893e1c): every minute from the 1-minute rollups.
The tests and bench/bench_queries.py hold the precomputed path to it: the same answers, exactly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

from backend.costs import spend, tokens
from backend.costs.catalog import KIND_OF_GPU_SQL

REFERENCE_PRICED_RUNS = f"""
    WITH bounds AS (
        SELECT coalesce(array_agg(DISTINCT t ORDER BY t), '{{}}') AS at
        FROM gpu_prices, LATERAL (VALUES (effective_from), (effective_to)) v(t)
        WHERE t > %(start)s AND t < %(end)s),
    runs AS (
        SELECT r.gpu_uuid, r.host, date_trunc('day', r.bucket, 'UTC') AS day, min(r.bucket) AS first_bucket,
               count(*) AS minutes, count(*) FILTER (WHERE r.gpu_util_avg < %(idle)s) AS idle_minutes
        FROM gpu_metrics_1m r, bounds
        WHERE r.bucket >= %(start)s AND r.bucket < %(end)s AND r.samples > 0
        GROUP BY r.gpu_uuid, r.host, 3, width_bucket(r.bucket, bounds.at))
    SELECT runs.*, g.model, g.labels, p.usd_per_gpu_hour AS price
    FROM runs
    JOIN gpus g ON g.gpu_uuid = runs.gpu_uuid
    LEFT JOIN gpu_prices p
      ON lower(p.gpu_model) = lower(g.model)
     AND p.pricing_kind = {KIND_OF_GPU_SQL}
     AND p.effective_from <= runs.first_bucket AND (p.effective_to IS NULL OR runs.first_bucket < p.effective_to)"""


@contextmanager
def reference_spend() -> Iterator[None]:
    """Inside: `cost_summary`, `month_projection` and `token_costs` run the reference query."""
    with mock.patch.object(spend, "PRICED_RUNS", REFERENCE_PRICED_RUNS), \
            mock.patch.object(tokens, "PRICED_RUNS", REFERENCE_PRICED_RUNS):
        yield
