"""One database connection per panel: commits when the panel's work succeeds, rolls back when it fails."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from backend.db import connect


@contextmanager
def connection() -> Iterator[psycopg.Connection]:
    with connect() as conn:
        yield conn
