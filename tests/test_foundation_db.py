"""Migrations: versioned, idempotent, profile-aware."""

from __future__ import annotations

import hashlib
import uuid

import psycopg
import pytest
from typer.testing import CliRunner

from backend.cli import app
from backend.config import Settings, get_settings
from backend.db import migrate as runner
from backend.db.migrate import ChangedMigration, discover, migrate, status


def test_migrate_is_idempotent_and_reports_status(settings, db):
    before = db.execute("SELECT count(*) AS n FROM schema_migrations").fetchone()["n"]
    result = migrate(settings)
    after = db.execute("SELECT count(*) AS n FROM schema_migrations").fetchone()["n"]
    assert before == after == len(result.applied)
    assert result.pending == []
    assert result.profile == "postgres"
    assert result.version == max(m.version for m in discover("postgres"))


def test_profile_specific_files_win(tmp_path):
    names = {m.version: m.slug for m in discover("postgres")}
    assert names[1] == "core"
    assert all(m.sql.strip() for m in discover("timescaledb"))


def _fresh_database(pg_admin_url: str) -> tuple[str, str]:
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, psycopg.conninfo.make_conninfo(pg_admin_url, dbname=name)


def test_fresh_database_gets_every_migration(pg_admin_url):
    name, url = _fresh_database(pg_admin_url)
    fresh = Settings(database_url=url)
    assert status(fresh).applied == []
    done = migrate(fresh)
    assert done.profile == "postgres"  # no timescaledb extension in the embedded server
    assert [v for v, _ in done.applied] == [m.version for m in discover("postgres")]
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_db_cli_status(settings):
    result = CliRunner().invoke(app, ["db", "status", "--json"])
    assert result.exit_code == 0, result.output
    assert '"profile": "postgres"' in result.output


def test_missing_database_url_is_one_clear_line(monkeypatch):
    from backend.config import get_settings

    monkeypatch.delenv("DATABASE_URL", raising=False)
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["db", "status"])
    get_settings.cache_clear()
    assert result.exit_code == 2
    assert "DATABASE_URL is not set" in result.output
    assert "Traceback" not in result.output


def test_every_catalog_field_has_its_columns_in_a_migrated_database(db):
    """Adding a field to `fields.FIELDS` needs a new migration: without one, this fails (the sink would too)."""
    from backend.telemetry.fields import FIELDS

    def columns(table: str) -> set[str]:
        rows = db.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0",
                          (table,)).fetchall()
        return {r["attname"] for r in rows}

    raw, minute, hour = columns("gpu_metrics"), columns("gpu_metrics_1m"), columns("gpu_metrics_1h")
    for f in FIELDS:
        assert f.column in raw
        assert {f"{f.column}_min", f"{f.column}_max"} <= minute & hour
        if f.kind == "gauge":
            assert f"{f.column}_avg" in minute & hour


def _package_of_migrations(tmp_path, monkeypatch, files: dict[str, str]):
    package = f"migr_{uuid.uuid4().hex[:8]}"
    root = tmp_path / package
    root.mkdir()
    (root / "__init__.py").write_text("")
    for name, text in files.items():
        (root / name).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(runner, "MIGRATIONS", package)
    return root


def test_editing_an_applied_migration_is_refused(pg_admin_url, tmp_path, monkeypatch):
    root = _package_of_migrations(tmp_path, monkeypatch, {
        "0001_plain.sql": "CREATE TABLE plain (id integer PRIMARY KEY);\n",
        "0002_concurrent.postgres.sql": "-- no-transaction\nCREATE INDEX CONCURRENTLY plain_id ON plain (id);\n",
        "0002_concurrent.timescaledb.sql": "SELECT 1;\n"})
    found = {m.version: m for m in discover("postgres")}
    assert [(v, m.slug, m.transactional) for v, m in found.items()] == [(1, "plain", True), (2, "concurrent", False)]
    name, url = _fresh_database(pg_admin_url)
    try:
        assert migrate(Settings(database_url=url)).applied == [(1, "plain"), (2, "concurrent")]
        with psycopg.connect(url) as conn:
            checksums = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
        assert checksums == {v: hashlib.sha256(m.sql.encode()).hexdigest()[:16] for v, m in found.items()}

        (root / "0001_plain.sql").write_text("CREATE TABLE plain (id integer PRIMARY KEY, added text);\n")
        (root / "0003_later.sql").write_text("CREATE TABLE later (id integer);\n")
        with pytest.raises(ChangedMigration, match=r"0001_plain \(applied [0-9a-f]{16}, now [0-9a-f]{16}\)"):
            migrate(Settings(database_url=url))
        with psycopg.connect(url) as conn:  # refused before anything ran: the new migration is still pending
            assert conn.execute("SELECT to_regclass('later')").fetchone() == (None,)

        monkeypatch.setenv("DATABASE_URL", url)
        get_settings.cache_clear()
        result = CliRunner().invoke(app, ["db", "migrate"])
        get_settings.cache_clear()
        assert result.exit_code == 2 and "applied migrations were edited: 0001_plain" in result.output
        assert "Traceback" not in result.output
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_two_migrations_with_one_version_are_refused(tmp_path, monkeypatch):
    _package_of_migrations(tmp_path, monkeypatch, {"0002_one.sql": "SELECT 1;\n", "0002_two.sql": "SELECT 2;\n"})
    with pytest.raises(RuntimeError, match="two migrations share version 0002"):
        discover("postgres")


def test_an_unreachable_database_is_one_line_for_any_command(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"postgresql:///x?host={tmp_path}&connect_timeout=2")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["streams", "nginx-config", "-o", str(tmp_path / "nginx.conf")])
    get_settings.cache_clear()
    assert result.exit_code == 2
    assert result.output.startswith("error: the database cannot be reached: ") and "Traceback" not in result.output
