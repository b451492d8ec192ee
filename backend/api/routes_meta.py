"""`GET /metrics` (Prometheus exposition) and the middleware that counts requests for it."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.api.auth import viewer

router = APIRouter()

REQUESTS = Counter("api_requests_total", "API requests by route template, method and status",
                   ["route", "method", "status"])
LATENCY = Histogram("api_request_duration_seconds", "API request latency by route template", ["route"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))


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
