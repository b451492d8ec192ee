"""nginx-rtmp's HTTP callbacks: `POST /rtmp/on_publish`, `/rtmp/on_update`, `/rtmp/on_publish_done`, `/rtmp/on_play`.

nginx reads only the status: 2xx allows, 3xx renames the stream to `Location`, anything else refuses (and drops a
live publisher on `on_update`). Any internal error answers 503, so a fault refuses rather than lets anyone in —
except on `on_update`, where a fault answers 200: doubt never kicks, so a publisher admitted earlier stays until a
check that works refuses it (a revocation kicks at once through nginx's control API, `nginx.py`).
Only nginx may call: the caller must be in `STREAMS_CALLBACK_ALLOWED_NETS` and the URL must carry the callback
token (`?token=`, written into the config by `streams nginx-config`); otherwise 403 before anything is read or written.
Bodies are parsed with the standard library rather than form dependencies: this is the hottest path we serve.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from pydantic import BaseModel, Field

from backend.api.auth import operator, viewer
from backend.api.errors import ERROR_RESPONSES
from backend.identity.principal import Principal
from backend.parsing import parse_duration
from backend.streams import schedules, service
from backend.streams.callbacks import CallbackGate, CallbackRequest, Decision
from backend.streams.nginx_config import TOKEN_PARAM
from backend.streams.schedules import Schedule

log = logging.getLogger(__name__)
_TOKEN_IN_URL = re.compile(rf"([?&]{TOKEN_PARAM}=)[^&\s]*")


class _HideCallbackToken(logging.Filter):
    """uvicorn's access log (`api serve --access-log`) prints each request's path and query: hide the token there."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_TOKEN_IN_URL.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                                for a in record.args)
        return True


logging.getLogger("uvicorn.access").addFilter(_HideCallbackToken())


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    gate: CallbackGate | None = getattr(app.state, "rtmp_gate", None)
    if gate is not None:
        await gate.close()


router = APIRouter(prefix="/rtmp", tags=["rtmp callbacks"], lifespan=_lifespan)


def _gate(request: Request) -> CallbackGate:
    gate: CallbackGate | None = getattr(request.app.state, "rtmp_gate", None)
    if gate is None:
        gate = request.app.state.rtmp_gate = CallbackGate(request.app.state.settings)
    return gate


def _forbidden(request: Request, why: str) -> Response:
    """Not nginx: refused before the body is read, so nothing is recorded (a forger could fill the tables)."""
    log.warning("rtmp %s refused: %s", request.url.path, why)
    return Response("forbidden\n", status_code=403, media_type="text/plain")


async def _decide(request: Request, handler: Callable[[CallbackGate, CallbackRequest], Awaitable[Decision | None]],
                  *, keep_on_fault: bool = False) -> Response:
    try:
        gate = _gate(request)
        peer = request.client.host if request.client else ""
        if not gate.caller_allowed(peer):
            return _forbidden(request, f"caller {peer} is not in STREAMS_CALLBACK_ALLOWED_NETS")
        if not await gate.token_valid(request.query_params.get(TOKEN_PARAM)):
            return _forbidden(request, f"caller {peer} sent a missing or wrong callback token")
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        decision = await handler(gate, CallbackRequest.from_form(form))
    except Exception as exc:  # fail closed, whatever went wrong, unless refusing would drop a live publisher
        if keep_on_fault:
            log.warning("rtmp %s could not check the publisher (%s: %s): kept until a check works",
                        request.url.path, type(exc).__name__, exc)
            return Response(status_code=200)
        log.error("rtmp %s failed closed: %s: %s", request.url.path, type(exc).__name__, exc)
        return Response("unavailable\n", status_code=503, media_type="text/plain")
    if decision is None or (decision.allowed and decision.rename_to is None):
        return Response(status_code=200)
    if decision.allowed:
        return Response(status_code=302, headers={"Location": decision.rename_to or ""})
    status = 429 if decision.reason == "address locked out" else 403
    return Response("denied\n", status_code=status, media_type="text/plain")


@router.post("/on_publish")
async def on_publish(request: Request) -> Response:
    """Allow (200), allow under the public name (302 `Location`), or refuse (403, 429 when locked out)."""
    return await _decide(request, CallbackGate.publish)


@router.post("/on_update")
async def on_update(request: Request) -> Response:
    """200 while the publisher's key is still valid, or when it cannot be checked; 403 drops it."""
    return await _decide(request, CallbackGate.update, keep_on_fault=True)


@router.post("/on_publish_done")
async def on_publish_done(request: Request) -> Response:
    """Remove the stream from the live registry (nginx ignores the answer)."""
    return await _decide(request, CallbackGate.publish_done)


@router.post("/on_play")
async def on_play(request: Request) -> Response:
    """Optional play control: players may attach only to streams that are live."""
    return await _decide(request, CallbackGate.play)


# -- REST: scheduled streams -------------------------------------------------------------------------------------

schedules_router = APIRouter(prefix="/api/v1/streams", tags=["streams"], responses=ERROR_RESPONSES)


class ScheduleRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="what is streamed, e.g. 'Friday keynote'")
    key_id: str = Field(description="the stream key's id")
    vm: str = Field(min_length=1, max_length=128, description="the VM whose nginx-rtmp carries the stream")
    starts_at: str = Field(description="ISO 8601 (UTC unless an offset is given) or +DURATION from now")
    ends_at: str = Field(description="ISO 8601 or +DURATION from now")
    grace: str = Field("0s", description="the key also works this long before and after the window, e.g. 5m")
    zone: str | None = None


def _schedule(s: Schedule) -> dict[str, Any]:
    return asdict(s) | {"grace_seconds": s.grace.total_seconds(), "state": s.state()}


@schedules_router.get("/schedules")
def list_schedules(request: Request, include_past: bool = False, vm: str | None = None,
                   principal: Principal = Depends(viewer)) -> list[dict[str, Any]]:
    """Scheduled streams by start: upcoming and open ones (all with `include_past`)."""
    rows = service.list_schedules(principal, include_past=include_past, vm=vm, settings=request.app.state.settings)
    return [_schedule(s) for s in rows]


@schedules_router.post("/schedules", status_code=201)
def create_schedule(request: Request, body: ScheduleRequest,
                    principal: Principal = Depends(operator)) -> dict[str, Any]:
    """Schedule a stream (operator+, audited): the key then publishes only inside the window ± grace."""
    now = datetime.now(UTC)
    made = service.schedule_stream(
        principal, body.name, body.key_id, body.vm, schedules.parse_when(body.starts_at, now),
        schedules.parse_when(body.ends_at, now),
        grace=parse_duration(body.grace, what="grace", allow_zero=True), zone=body.zone,
        settings=request.app.state.settings)
    return _schedule(made)


@schedules_router.delete("/schedules/{schedule_id}")
def cancel_schedule(request: Request, schedule_id: int, principal: Principal = Depends(operator)) -> dict[str, Any]:
    """Cancel a scheduled stream (operator+, audited)."""
    return _schedule(service.cancel_schedule(principal, schedule_id, settings=request.app.state.settings))
