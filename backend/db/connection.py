"""The PostgreSQL adapter: every module gets its connections here, so connection policy lives in one place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row

from backend.config import Settings, get_settings
from backend.errors import Unavailable


def connect(settings: Settings | None = None, *, autocommit: bool = False, **kwargs: object) -> psycopg.Connection:
    """Open a connection to `DATABASE_URL`; rows come back as dicts."""
    url = (settings or get_settings()).require_database_url()
    return psycopg.connect(url, autocommit=autocommit, row_factory=dict_row, **kwargs)


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
    with explained_timeouts(settings), psycopg.connect(query_conninfo(settings), row_factory=dict_row) as conn:
        yield conn
