"""JSON error bodies for the API: always `{"error": ...}`, plus `"field"` when one parameter is to blame."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException


class ErrorBody(BaseModel):
    """Every API error: a message safe to show, and the parameter at fault when there is one."""

    error: str
    field: str | None = None


def _documented(description: str) -> dict:
    return {"model": ErrorBody, "description": description}


ERROR_RESPONSES: dict[int | str, dict] = {
    400: _documented("a parameter is invalid; `field` names it"),
    401: _documented("missing, invalid, expired or revoked bearer token"),
    403: _documented("the token's role is too low"),
    404: _documented("no such GPU"),
    413: _documented("the request body is larger than API_MAX_BODY_BYTES"),
    422: _documented("a parameter has the wrong type or is out of range; `field` names it"),
    503: _documented("the database is unreachable"),
}
"""Documented on every `/api/v1` router, so clients (and the schemathesis fuzz test) know every answer."""

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
