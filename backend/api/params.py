"""Query and path parameter types shared by the `/api/v1` routers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Query

PRINTABLE = r"^[\x20-\x7e]+$"
"""Printable ASCII: names, hosts and UUIDs never need more, and NUL bytes never reach PostgreSQL."""

Start = Annotated[datetime | None, Query(description="ISO 8601; default: `end` minus the endpoint's default window")]
End = Annotated[datetime | None, Query(description="ISO 8601; default: now")]


def window(start: datetime | None, end: datetime | None, default: timedelta) -> tuple[datetime, datetime]:
    """[start, end) with defaults: end = now, start = end − default."""
    stop = end or datetime.now(UTC)
    return start or stop - default, stop
