"""JSON error bodies for the API: always `{"error": ...}`, plus `"field"` when one parameter is to blame."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

_LOCATIONS = {"query", "path", "header", "body", "cookie"}


def _field(loc: tuple) -> str | None:
    names = [str(part) for part in loc if part not in _LOCATIONS]
    return ".".join(names) or None


async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's parameter validation, reduced to the first problem, naming its field."""
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    field = _field(tuple(first.get("loc", ())))
    message = f"{field}: {first['msg']}" if field else str(first["msg"])
    return JSONResponse({"error": message, "field": field}, status_code=422)


async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)
