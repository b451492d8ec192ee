"""The PostgreSQL adapter: every module gets its connections here, so connection policy lives in one place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.rows import dict_row

from backend.config import Settings, get_settings


def connect(settings: Settings | None = None, *, autocommit: bool = False, **kwargs: object) -> psycopg.Connection:
    """Open a connection to `DATABASE_URL`; rows come back as dicts."""
    url = (settings or get_settings()).require_database_url()
    return psycopg.connect(url, autocommit=autocommit, row_factory=dict_row, **kwargs)


@contextmanager
def transaction(settings: Settings | None = None) -> Iterator[psycopg.Connection]:
    """A connection whose work commits on success and rolls back on error, then closes."""
    with connect(settings) as conn:
        yield conn
