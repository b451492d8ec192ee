"""Migrations: versioned, idempotent, profile-aware."""

from __future__ import annotations

from typer.testing import CliRunner

from backend.cli import app
from backend.db.migrate import discover, migrate, status


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


def test_fresh_database_gets_every_migration(pg_admin_url):
    import uuid

    import psycopg

    from backend.config import Settings

    name = f"fresh_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(pg_admin_url, dbname=name)
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
