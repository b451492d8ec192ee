"""The API application, assembled from every area's `APIRouter`: add a router to `ROUTERS` below.

It sits above the areas (their routers use `backend.api`'s auth, dependencies and error bodies), next to the CLI
root; uvicorn imports `create_app` by name, so every worker installs the settings loader itself.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from backend import settings_loader
from backend.api import routes_meta
from backend.api.body_limit import BodyLimit
from backend.api.deps import lifespan
from backend.api.errors import http_error, validation_error
from backend.config import Settings, get_settings
from backend.costs import api as costs_api
from backend.errors import PlatformError
from backend.health import api as health_api
from backend.identity.principal import PermissionDenied
from backend.queries import api as queries_api
from backend.secrets import api as secrets_api
from backend.secrets.service import MAX_VALUE_BYTES
from backend.streams import api as streams_api
from backend.telemetry import api as telemetry_api
from backend.vm import api as vm_api

# Mounted in this order.
ROUTERS: tuple[APIRouter, ...] = (
    routes_meta.router,
    telemetry_api.router,
    queries_api.router,
    costs_api.router,
    costs_api.streams_router,
    streams_api.router,
    streams_api.schedules_router,
    health_api.router,
    vm_api.router,
    secrets_api.router,
)


def _secret_body_bytes(settings: Settings) -> int:
    """A maximal secret value as JSON, every byte escaped as `\\u00XX` at worst, plus the usual allowance."""
    return 6 * MAX_VALUE_BYTES + settings.api_max_body_bytes


def create_app(settings: Settings | None = None) -> FastAPI:
    settings_loader.install()
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
    app.add_middleware(routes_meta.RequestMetrics)

    @app.get("/health", tags=["meta"])
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    for router in ROUTERS:
        app.include_router(router)
    return app
