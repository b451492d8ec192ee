"""One database connection per panel: commits when the panel's work succeeds, rolls back when it fails, and is
cancelled past QUERY_STATEMENT_TIMEOUT_S (the panel then says so instead of holding the database)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from backend.db.connection import query_connection


@contextmanager
def connection() -> Iterator[psycopg.Connection]:
    with query_connection() as conn:
        yield conn
