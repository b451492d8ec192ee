"""Per-request resources for API routes: a pooled database connection.

The pool opens on first use and closes when the application shuts down (`lifespan`), so importing or building
the app never needs a database. Its connections carry QUERY_STATEMENT_TIMEOUT_S, so no request holds one longer.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, Request
from psycopg_pool import ConnectionPool, PoolTimeout

from backend.config import Settings
from backend.db.connection import explained_timeouts, query_pool
from backend.errors import Unavailable

_lock = threading.Lock()


def _pool(app: FastAPI) -> ConnectionPool:
    pool = getattr(app.state, "db_pool", None)
    if pool is not None:
        return pool
    with _lock:
        if getattr(app.state, "db_pool", None) is None:
            app.state.db_pool = query_pool(app.state.settings, name="api")
        return app.state.db_pool


def db(request: Request) -> Iterator[psycopg.Connection]:
    """An autocommit connection (dict rows) for this request; a dead database or a query past the statement
    timeout answers 503 saying which, not 500."""
    try:
        with explained_timeouts(settings_of(request)), _pool(request.app).connection() as conn:
            yield conn
    except (PoolTimeout, psycopg.OperationalError) as exc:
        raise Unavailable("the database is not reachable right now") from exc


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Close the pool at shutdown and forget it, so the same application started again opens a fresh one."""
    yield
    pool = getattr(app.state, "db_pool", None)
    if pool is not None:
        app.state.db_pool = None
        pool.close()


def settings_of(request: Request) -> Settings:
    """The settings the application was created with."""
    return request.app.state.settings
