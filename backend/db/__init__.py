"""PostgreSQL access: connections, migrations and the storage profile (`postgres` or `timescaledb`)."""

from backend.db.connection import connect, transaction

__all__ = ["connect", "transaction"]
