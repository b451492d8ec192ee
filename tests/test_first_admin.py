"""`db migrate` creates the first admin from ADMIN_PASSWORD (the compose stack's migrate job), once."""

from __future__ import annotations

import psycopg
import pytest
from typer.testing import CliRunner

from backend.cli import app
from backend.config import get_settings
from backend.console_auth import login
from backend.identity.users import LoginFailed


def _migrate(monkeypatch: pytest.MonkeyPatch, admin_password: str | None) -> str:
    if admin_password is None:
        monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("ADMIN_PASSWORD", admin_password)
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["db", "migrate"])
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return result.output


def test_migrate_creates_the_first_admin_from_admin_password_once(settings, db: psycopg.Connection,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    output = _migrate(monkeypatch, "the-first-admin-password")
    assert "created the first admin 'admin' from ADMIN_PASSWORD" in output
    assert "the-first-admin-password" not in output
    assert login("admin", "the-first-admin-password").role == "admin"

    again = _migrate(monkeypatch, "a-changed-admin-password")
    assert "admin 'admin' exists: ADMIN_PASSWORD left unused" in again
    with pytest.raises(LoginFailed):
        login("admin", "a-changed-admin-password")
    assert login("admin", "the-first-admin-password").name == "admin"
    created = db.execute("SELECT count(*) AS n FROM audit_log WHERE area = 'users' AND action = 'create' "
                         "AND target = 'admin'").fetchone()["n"]
    assert created == 1


def test_migrate_without_admin_password_creates_nobody_and_says_what_to_do(settings, db: psycopg.Connection,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    output = _migrate(monkeypatch, None)
    assert "no admin yet and ADMIN_PASSWORD is not set" in output
    assert db.execute("SELECT count(*) AS n FROM users").fetchone()["n"] == 0


def test_a_too_short_admin_password_fails_the_migrate_job_in_one_line(settings, db: psycopg.Connection,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_PASSWORD", "short")
    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["db", "migrate"])
    get_settings.cache_clear()
    assert result.exit_code == 2
    assert "password too short" in result.output and "Traceback" not in result.output
    assert db.execute("SELECT count(*) AS n FROM users").fetchone()["n"] == 0
