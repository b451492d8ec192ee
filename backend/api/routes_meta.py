"""`GET /api/v1/metrics` (the metric catalog with units) and `GET /metrics` (Prometheus exposition)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.api.auth import viewer
from backend.api.errors import ERROR_RESPONSES
from backend.telemetry.fields import FIELDS

router = APIRouter()

REQUESTS = Counter("api_requests_total", "API requests by route template, method and status",
                   ["route", "method", "status"])
LATENCY = Histogram("api_request_duration_seconds", "API request latency by route template", ["route"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))


class MetricInfo(BaseModel):
    name: str
    dcgm_field: str
    unit: str
    kind: str
    description: str
    rollups: list[str]


def _rollups(kind: str) -> list[str]:
    return ["avg", "min", "max"] if kind == "gauge" else ["min", "max"]


@router.get("/api/v1/metrics", tags=["meta"], response_model=list[MetricInfo], responses=ERROR_RESPONSES)
def metric_catalog(_: object = Depends(viewer)) -> list[MetricInfo]:
    """Every metric stored per sample, with its unit and the aggregates the 1m/1h rollups keep."""
    return [MetricInfo(name=f.column, dcgm_field=f.dcgm, unit=f.unit, kind=f.kind, description=f.description,
                       rollups=_rollups(f.kind)) for f in FIELDS]


@router.get("/metrics", tags=["meta"], include_in_schema=False)
def prometheus(_: object = Depends(viewer)) -> Response:
    """Prometheus text exposition of this process: request counts and latencies, process and Python stats. It needs
    a viewer token like `/api/v1`: route names and error rates are not for anonymous eyes."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """ASGI middleware counting requests by route template (never the raw path, which may hold ids).

    A plain ASGI middleware rather than `@app.middleware("http")`: Starlette's `BaseHTTPMiddleware` costs about as
    much CPU as the RTMP callback it wraps. A request whose handler raises is counted as a 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(route, scope["method"], str(status)).inc()
            LATENCY.labels(route).observe(time.perf_counter() - started)
