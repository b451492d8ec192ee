"""Versioned, idempotent schema migrations with a storage profile.

Migrations are SQL files in `backend/db/migrations/` named `NNNN_slug.sql`. A file may come in two flavours,
`NNNN_slug.postgres.sql` and `NNNN_slug.timescaledb.sql`; the one matching the database's profile is applied.
Applied migrations are immutable: each one's checksum is recorded, and `migrate` refuses to run when a file no
longer matches what a database applied (a changed schema goes in a new migration, never an edit).
Version ranges belong to areas so parallel work never collides: 0001-0099 core, 0100 telemetry, 0200 health,
0250 costs, 0280 api, 0300 streams, 0400 vm, 0500 secrets. Each file runs in its own transaction unless its
first line is `-- no-transaction` (TimescaleDB continuous aggregates need that). A version that is already
applied is never run again; versions may be applied out of order, so areas can add theirs independently.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import psycopg

from backend.config import Settings, get_settings
from backend.db.connection import connect
from backend.errors import ConfigError

log = logging.getLogger(__name__)

Profile = Literal["postgres", "timescaledb"]
_NAME = re.compile(r"(?P<version>\d{4})_(?P<slug>[a-z0-9_]+?)(?:\.(?P<profile>postgres|timescaledb))?\.sql")
MIGRATIONS = "backend.db.migrations"
_LOCK_KEY = 0x5354524D  # advisory lock: one migrator at a time


@dataclass(frozen=True)
class Migration:
    version: int
    slug: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    @property
    def transactional(self) -> bool:
        return not self.sql.lstrip().startswith("-- no-transaction")


@dataclass(frozen=True)
class Status:
    profile: Profile
    applied: list[tuple[int, str]]
    pending: list[tuple[int, str]]

    @property
    def version(self) -> int:
        return max((v for v, _ in self.applied), default=0)


def discover(profile: Profile) -> list[Migration]:
    """The migrations for a profile, in version order; a profile-specific file wins over a plain one."""
    found: dict[int, Migration] = {}
    specific: set[int] = set()
    for entry in resources.files(MIGRATIONS).iterdir():
        match = _NAME.fullmatch(entry.name)
        if not match:
            continue
        version, file_profile = int(match["version"]), match["profile"]
        if file_profile not in (None, profile) or (file_profile is None and version in specific):
            continue
        if version in found and (file_profile is None or version in specific):
            raise RuntimeError(f"two migrations share version {version:04d}: {found[version].slug}, {match['slug']}")
        found[version] = Migration(version, match["slug"], entry.read_text(encoding="utf-8"))
        if file_profile:
            specific.add(version)
    return [found[v] for v in sorted(found)]


def detect_profile(conn: psycopg.Connection, wanted: str = "auto") -> Profile:
    """`timescaledb` when the extension is installed or can be; `postgres` otherwise (or when asked)."""
    stored = _stored_profile(conn)
    if stored:
        return stored
    if wanted in ("postgres", "timescaledb"):
        return wanted  # type: ignore[return-value]
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    return "timescaledb" if row else "postgres"


def _stored_profile(conn: psycopg.Connection) -> Profile | None:
    if not conn.execute("SELECT to_regclass('platform_meta') IS NOT NULL AS present").fetchone()["present"]:
        return None
    row = conn.execute("SELECT value FROM platform_meta WHERE key = 'profile'").fetchone()
    return row["value"] if row else None


def _bootstrap(conn: psycopg.Connection, profile: Profile) -> None:
    if profile == "timescaledb":
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version integer PRIMARY KEY, slug text NOT NULL, checksum text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    conn.execute("CREATE TABLE IF NOT EXISTS platform_meta (key text PRIMARY KEY, value text NOT NULL)")
    conn.execute(
        "INSERT INTO platform_meta (key, value) VALUES ('profile', %s) ON CONFLICT (key) DO NOTHING", (profile,)
    )


def _applied(conn: psycopg.Connection) -> dict[int, str]:
    return {r["version"]: r["slug"] for r in conn.execute("SELECT version, slug FROM schema_migrations")}


class ChangedMigration(ConfigError):
    """An applied migration's file was edited: new and old databases would silently differ."""


def verify(conn: psycopg.Connection, available: list[Migration]) -> None:
    """Refuse when an applied migration's text is not what was applied (its recorded checksum)."""
    recorded = {r["version"]: r["checksum"] for r in conn.execute("SELECT version, checksum FROM schema_migrations")}
    changed = [m for m in available if m.version in recorded and recorded[m.version] != m.checksum]
    if changed:
        names = ", ".join(f"{m.version:04d}_{m.slug} (applied {recorded[m.version]}, now {m.checksum})"
                          for m in changed)
        raise ChangedMigration(f"applied migrations were edited: {names}. Restore them and put the change in a "
                               "new migration (see docs/telemetry.md, 'Adding a field')")


def migrate(settings: Settings | None = None) -> Status:
    """Apply every pending migration; safe to run any number of times, from several processes at once."""
    settings = settings or get_settings()
    with connect(settings, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            profile = detect_profile(conn, settings.db_profile)
            _bootstrap(conn, profile)
            done = _applied(conn)
            available = discover(profile)
            verify(conn, available)
            for migration in available:
                if migration.version in done:
                    continue
                log.info("applying migration %04d_%s (%s)", migration.version, migration.slug, profile)
                _apply(conn, migration)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return status(settings)


def _apply(conn: psycopg.Connection, migration: Migration) -> None:
    record = "INSERT INTO schema_migrations (version, slug, checksum) VALUES (%s, %s, %s)"
    params = (migration.version, migration.slug, migration.checksum)
    if migration.transactional:
        with conn.transaction():
            conn.execute(migration.sql)
            conn.execute(record, params)
        return
    for statement in _statements(migration.sql):
        conn.execute(statement)
    conn.execute(record, params)


def _statements(sql: str) -> list[str]:
    """Split a no-transaction file on `;` at line ends; such files must keep to one statement per `;`."""
    return [s.strip() for s in re.split(r";\s*$", sql, flags=re.MULTILINE) if s.strip() and not _only_comments(s)]


def _only_comments(chunk: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in chunk.splitlines())


def status(settings: Settings | None = None) -> Status:
    """Which profile the database uses, which migrations are applied and which are pending."""
    with connect(settings or get_settings(), autocommit=True) as conn:
        profile = detect_profile(conn, (settings or get_settings()).db_profile)
        has_table = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL AS p").fetchone()["p"]
        done = _applied(conn) if has_table else {}
    available = discover(profile)
    return Status(
        profile=profile,
        applied=sorted(done.items()),
        pending=[(m.version, m.slug) for m in available if m.version not in done],
    )


def profile_of(conn: psycopg.Connection) -> Profile:
    """The profile a migrated database was set up with (readers use it to pick their queries)."""
    stored = _stored_profile(conn)
    if stored is None:
        raise RuntimeError("the database is not migrated: run `stream-platform db migrate`")
    return stored
