"""The API application. Each area contributes an `APIRouter`; add it to `ROUTERS` below."""

from __future__ import annotations

import importlib

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from backend.api.body_limit import BodyLimit
from backend.api.deps import lifespan
from backend.api.errors import http_error, validation_error
from backend.api.routes_meta import RequestMetrics
from backend.config import Settings, get_settings
from backend.errors import PlatformError
from backend.identity.principal import PermissionDenied
from backend.secrets.service import MAX_VALUE_BYTES

# Modules exposing `router: APIRouter`, mounted in this order.
ROUTERS: tuple[str, ...] = (
    "backend.api.routes_meta",
    "backend.api.routes_gpus",
    "backend.api.routes_costs",
    "backend.streams.api",
    "backend.health.api",
    "backend.vm.api",
    "backend.secrets.api",
)


def _secret_body_bytes(settings: Settings) -> int:
    """A maximal secret value as JSON, every byte escaped as `\\u00XX` at worst, plus the usual allowance."""
    return 6 * MAX_VALUE_BYTES + settings.api_max_body_bytes


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Stream Platform API",
        version="1",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings

    @app.exception_handler(PlatformError)
    async def platform_error(_: Request, exc: PlatformError) -> JSONResponse:
        body = {"error": str(exc)} | ({"field": exc.field} if getattr(exc, "field", None) else {})
        return JSONResponse(body, status_code=exc.http_status)

    @app.exception_handler(PermissionDenied)
    async def denied(_: Request, exc: PermissionDenied) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=403)

    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    # The last one added runs first: metrics count the 413s too.
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes,
                       allowances={"/api/v1/secrets": _secret_body_bytes(settings)})
    app.add_middleware(RequestMetrics)

    @app.get("/health", tags=["meta"])
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    for module in ROUTERS:
        app.include_router(importlib.import_module(module).router)
    return app
