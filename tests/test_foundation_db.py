"""Migrations: versioned, idempotent, profile-aware."""

from __future__ import annotations

import hashlib
import uuid

import psycopg
import pytest
from typer.testing import CliRunner

from backend.cli import app
from backend.config import Settings
from backend.db import migrate as runner
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


def test_telemetry_migrations_are_generated_from_the_field_catalog():
    from backend.telemetry.fields import FIELDS

    for profile, rollups_transactional in (("postgres", True), ("timescaledb", False)):
        by_version = {m.version: m for m in discover(profile)}
        raw, rollups = by_version[101], by_version[102]
        assert (raw.slug, rollups.slug) == ("gpu_metrics", "gpu_metrics_rollups")
        assert all(f"    {f.column:<35}{f.sql_type}," in raw.sql for f in FIELDS)
        assert all(f"{f.column}_max" in rollups.sql for f in FIELDS)
        assert rollups.transactional is rollups_transactional
        assert "gpu_metrics_1m" in rollups.sql and "gpu_metrics_1h" in rollups.sql


def test_python_migrations_are_applied_like_sql_files(pg_admin_url, tmp_path, monkeypatch):
    """`NNNN_slug[.profile].py` exposing `sql()`: its text is applied and checksummed as a file's would be,
    `-- no-transaction` included (CREATE INDEX CONCURRENTLY fails inside a transaction)."""
    package = f"pymigr_{uuid.uuid4().hex[:8]}"
    root = tmp_path / package
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "0001_plain.sql").write_text("CREATE TABLE plain (id integer PRIMARY KEY);\n")
    (root / "0002_generated.py").write_text(
        'def sql() -> str:\n    return "CREATE TABLE generated (" + ", ".join(["a integer", "b text"]) + ");"\n')
    (root / "0003_concurrent.postgres.py").write_text(
        'def sql() -> str:\n    return "-- no-transaction\\nCREATE INDEX CONCURRENTLY gen_b ON generated (b);\\n"\n')
    (root / "0003_concurrent.timescaledb.py").write_text('def sql() -> str:\n    return "SELECT 1;"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(runner, "MIGRATIONS", package)

    found = {m.version: m for m in discover("postgres")}
    assert [(v, m.slug) for v, m in found.items()] == [(1, "plain"), (2, "generated"), (3, "concurrent")]
    assert found[2].sql == "CREATE TABLE generated (a integer, b text);" and found[2].transactional
    assert not found[3].transactional
    assert [m.sql for m in discover("timescaledb") if m.version == 3] == ["SELECT 1;"]

    name, url = _fresh_database(pg_admin_url)
    try:
        done = migrate(Settings(database_url=url))
        assert done.applied == [(1, "plain"), (2, "generated"), (3, "concurrent")] and done.pending == []
        with psycopg.connect(url) as conn:
            checksums = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
            index = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'gen_b'").fetchone()
        assert checksums == {v: hashlib.sha256(m.sql.encode()).hexdigest()[:16] for v, m in found.items()}
        assert index == ("CREATE INDEX gen_b ON public.generated USING btree (b)",)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')

    (root / "0002_generated.sql").write_text("CREATE TABLE twin (id integer);\n")
    with pytest.raises(RuntimeError, match="two migrations share version 0002"):
        discover("postgres")
