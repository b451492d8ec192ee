"""The PostgreSQL adapter: every module gets its connections and pools here, so connection policy lives in one place.

Short connections (`connect`, `connect_url`, `transaction`) serve the CLI, migrations, the sink and the VM agent;
`query_connection` and `query_pool` answer people and API clients under the statement timeout; `open_async_pool`
serves the RTMP callbacks. A pool's owner closes it when its application shuts down.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from backend.config import Settings, get_settings
from backend.errors import Unavailable

POOL_TIMEOUT_S = 5.0
"""How long a request waits for a pooled connection before it is answered "unavailable"."""
_POOLED = {"autocommit": True, "row_factory": dict_row}


def connect_url(url: str, *, autocommit: bool = False, **kwargs: Any) -> psycopg.Connection:
    """Open a connection to `url`; rows come back as dicts. For callers handed a URL, such as the VM agent's store
    and GPU signal, which run on hosts where `DATABASE_URL` may be unset."""
    return psycopg.connect(url, autocommit=autocommit, row_factory=dict_row, **kwargs)


def connect(settings: Settings | None = None, *, autocommit: bool = False, **kwargs: Any) -> psycopg.Connection:
    """Open a connection to `DATABASE_URL`; rows come back as dicts."""
    return connect_url((settings or get_settings()).require_database_url(), autocommit=autocommit, **kwargs)


@contextmanager
def transaction(settings: Settings | None = None) -> Iterator[psycopg.Connection]:
    """A connection whose work commits on success and rolls back on error, then closes."""
    with connect(settings) as conn:
        yield conn


def query_conninfo(settings: Settings) -> str:
    """`DATABASE_URL` plus `statement_timeout` = QUERY_STATEMENT_TIMEOUT_S (next to any `options` the URL has).

    For connections that answer people and API clients, so no single request can hold one of them for longer. The
    sink, migrations and background loops keep `connect`: their long statements are legitimate. Set at connection
    start-up (libpq `options`), so it costs no extra round trip.
    """
    url = settings.require_database_url()
    existing = conninfo_to_dict(url).get("options") or ""
    timeout_ms = round(settings.query_statement_timeout_s * 1000)
    return make_conninfo(url, options=f"{existing} -c statement_timeout={timeout_ms}".strip())


@contextmanager
def explained_timeouts(settings: Settings) -> Iterator[None]:
    """A query the statement timeout cancelled becomes an `Unavailable` that says why and what to do."""
    try:
        yield
    except psycopg.errors.QueryCanceled as exc:
        raise Unavailable(f"the query ran longer than {settings.query_statement_timeout_s:g} s "
                          "(QUERY_STATEMENT_TIMEOUT_S) and was cancelled: narrow the time range or filters") from exc


@contextmanager
def query_connection(settings: Settings | None = None) -> Iterator[psycopg.Connection]:
    """A connection for one console panel: under the statement timeout, commits on success, rolls back on error."""
    settings = settings or get_settings()
    with explained_timeouts(settings), connect_url(query_conninfo(settings)) as conn:
        yield conn


def query_pool(settings: Settings, *, name: str, max_size: int = 8) -> ConnectionPool:
    """An open pool of autocommit query connections (dict rows, under the statement timeout) for a server's requests.

    It fills in the background, so creating it needs no database yet; a dead connection is replaced before a
    request gets it.
    """
    return ConnectionPool(query_conninfo(settings), min_size=1, max_size=max_size, timeout=POOL_TIMEOUT_S,
                          kwargs=dict(_POOLED), check=ConnectionPool.check_connection, name=name, open=True)


async def open_async_pool(settings: Settings, *, name: str, max_size: int,
                          configure: Callable[[psycopg.AsyncConnection], Awaitable[None]] | None = None,
                          ) -> AsyncConnectionPool:
    """An open pool of autocommit connections (dict rows) for async handlers; `configure` runs on each new one.

    No statement timeout: its callers (the RTMP callbacks) run a few indexed statements of their own.
    """
    pool = AsyncConnectionPool(settings.require_database_url(), min_size=1, max_size=max_size,
                               timeout=POOL_TIMEOUT_S, kwargs=dict(_POOLED), configure=configure, name=name, open=False)
    await pool.open()
    return pool
