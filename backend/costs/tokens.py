"""Cost per million tokens per served model, from `token_usage` and the GPU-hours measured by telemetry.

Each GPU's measured cost over the window (its present GPU-minutes × the catalog price) is shared among the
models it served in proportion to their tokens; a model's $/1M tokens is its share of cost ÷ its tokens × 10⁶.
For one model on a GPU this is exactly the FIELD_NOTES formula $/h ÷ (tokens/s × 3600) × 10⁶, with tokens/s
measured over the hours the GPU was actually present. Tokens from GPUs with no telemetry or no catalog price
cannot be costed: they are reported as `uncosted_tokens`, never as free.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from backend.costs.spend import PRICED_RUNS
from backend.queries.timeseries import check_range


@dataclass(frozen=True)
class TokenCost:
    served_model: str
    gpus: int
    requests: int
    prompt_tokens: int
    completion_tokens: int
    costed_tokens: int
    uncosted_tokens: int
    gpu_hours: float
    cost_usd: float
    tokens_per_second_per_gpu: float | None
    usd_per_million_tokens: float | None
    usd_per_million_completion_tokens: float | None
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    """Request-weighted averages of the reported per-interval percentiles."""


def token_costs(conn: psycopg.Connection, start: datetime, end: datetime) -> list[TokenCost]:
    """Per served model in [start, end): tokens, GPU-hours, cost and $/1M tokens, most expensive first."""
    start, end = check_range(start, end)
    query = sql.SQL(
        """WITH usage AS (
               SELECT gpu_uuid, served_model, sum(requests) AS requests, sum(prompt_tokens) AS prompt,
                      sum(completion_tokens) AS completion,
                      sum(latency_ms_p50 * requests) AS p50_sum, sum(latency_ms_p95 * requests) AS p95_sum,
                      sum(requests) FILTER (WHERE latency_ms_p50 IS NOT NULL) AS p50_requests,
                      sum(requests) FILTER (WHERE latency_ms_p95 IS NOT NULL) AS p95_requests
               FROM token_usage WHERE time >= %(start)s AND time < %(end)s GROUP BY gpu_uuid, served_model),
           gpu_cost AS (SELECT gpu_uuid, sum(minutes)::bigint AS minutes, sum(price * minutes) / 60 AS cost,
                               bool_and(price IS NOT NULL) AS priced
                        FROM ({runs}) priced WHERE gpu_uuid IN (SELECT gpu_uuid FROM usage) GROUP BY gpu_uuid),
           shared AS (
               SELECT u.*, c.minutes, c.cost, coalesce(c.priced, false) AS costed,
                      (u.prompt + u.completion)::float8
                        / nullif(sum(u.prompt + u.completion) OVER (PARTITION BY u.gpu_uuid), 0) AS share
               FROM usage u LEFT JOIN gpu_cost c USING (gpu_uuid))
           SELECT served_model, count(DISTINCT gpu_uuid) AS gpus, sum(requests) AS requests,
                  sum(prompt) AS prompt_tokens, sum(completion) AS completion_tokens,
                  coalesce(sum(prompt + completion) FILTER (WHERE costed), 0) AS costed_tokens,
                  coalesce(sum(completion) FILTER (WHERE costed), 0) AS costed_completion,
                  coalesce(sum(prompt + completion) FILTER (WHERE NOT costed), 0) AS uncosted_tokens,
                  coalesce(sum(minutes * share) FILTER (WHERE costed), 0) / 60 AS gpu_hours,
                  coalesce(sum(cost * share::numeric) FILTER (WHERE costed), 0) AS cost,
                  sum(p50_sum) / nullif(sum(p50_requests), 0) AS p50,
                  sum(p95_sum) / nullif(sum(p95_requests), 0) AS p95
           FROM shared GROUP BY served_model ORDER BY cost DESC, served_model"""
    ).format(runs=sql.SQL(PRICED_RUNS))  # type: ignore[arg-type]
    return [_token_cost(r) for r in conn.execute(query, {"start": start, "end": end, "idle": None})]


def _token_cost(r: dict) -> TokenCost:
    cost, hours, costed = float(r["cost"]), float(r["gpu_hours"]), int(r["costed_tokens"])
    return TokenCost(
        served_model=r["served_model"], gpus=r["gpus"], requests=int(r["requests"]),
        prompt_tokens=int(r["prompt_tokens"]), completion_tokens=int(r["completion_tokens"]), costed_tokens=costed,
        uncosted_tokens=int(r["uncosted_tokens"]), gpu_hours=hours, cost_usd=cost,
        tokens_per_second_per_gpu=costed / (hours * 3600) if hours else None,
        usd_per_million_tokens=cost / costed * 1e6 if costed else None,
        usd_per_million_completion_tokens=cost / int(r["costed_completion"]) * 1e6 if r["costed_completion"] else None,
        latency_ms_p50=r["p50"], latency_ms_p95=r["p95"],
    )
