"""Request bodies over a size limit are refused with 413 before anything reads or parses them.

FastAPI parses a JSON body before the route's dependencies run, so without this an anonymous caller could make the
process hold and parse any amount of JSON before the bearer check said no (16 MB measured at ~100 MB of peak RSS).
A plain ASGI middleware, like `RequestMetrics`, because `BaseHTTPMiddleware` costs as much as a whole RTMP callback.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised into the app when a streamed body passes the limit; the middleware answers for it."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes (API_MAX_BODY_BYTES)")


class BodyLimit:
    """Answer 413 to a request whose body exceeds `limit` bytes (or the allowance of the longest matching prefix in
    `allowances`, for routes that legitimately take more).

    A `Content-Length` over the limit is refused before the app runs. A chunked or under-declared body is counted as
    it streams: the read that passes the limit raises `BodyTooLarge` into the app, and whatever the app would then
    answer is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, limit: int, allowances: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.allowances = sorted((allowances or {}).items(), key=lambda item: -len(item[0]))

    def limit_for(self, path: str) -> int:
        return next((size for prefix, size in self.allowances if path.startswith(prefix)), self.limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(send, limit)
            return
        received = 0
        exceeded = started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the app's own answer to the oversized body; ours goes out below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            if started:
                raise
        if exceeded and not started:
            await _refuse(send, limit)


async def _refuse(send: Send, limit: int) -> None:
    body = orjson.dumps({"error": BodyTooLarge(limit).detail})
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
