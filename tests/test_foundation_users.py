"""Identity: users, roles, lockout, the acting principal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from backend import audit
from backend.cli import app
from backend.identity import SYSTEM, PermissionDenied, Principal, Role
from backend.identity import users as svc


def test_add_and_authenticate(db):
    svc.add_user(db, SYSTEM, "alice", Role.operator, "correct horse battery")
    principal = svc.authenticate(db, "alice", "correct horse battery")
    assert principal == Principal("alice", Role.operator)
    stored = db.execute("SELECT password_hash FROM users WHERE name='alice'").fetchone()["password_hash"]
    assert stored.startswith("$argon2id$") and "correct horse" not in stored


def test_wrong_password_and_unknown_user_fail_alike(db):
    svc.add_user(db, SYSTEM, "bob", Role.viewer, "a long password")
    with pytest.raises(svc.LoginFailed) as wrong:
        svc.authenticate(db, "bob", "nope nope nope")
    with pytest.raises(svc.LoginFailed) as unknown:
        svc.authenticate(db, "nobody", "nope nope nope")
    assert str(wrong.value) == str(unknown.value)


def test_lockout_after_repeated_failures_then_expiry(db):
    svc.add_user(db, SYSTEM, "carol", Role.viewer, "a long password")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(svc.MAX_FAILED_LOGINS):
        with pytest.raises(svc.LoginFailed):
            svc.authenticate(db, "carol", "wrong password!", now=now)
    with pytest.raises(svc.LoginFailed, match="locked"):
        svc.authenticate(db, "carol", "a long password", now=now + timedelta(minutes=1))
    later = now + svc.LOCKOUT + timedelta(seconds=1)
    assert svc.authenticate(db, "carol", "a long password", now=later).name == "carol"


def test_disabled_user_cannot_log_in(db):
    svc.add_user(db, SYSTEM, "dave", Role.admin, "a long password")
    svc.set_disabled(db, SYSTEM, "dave", True)
    with pytest.raises(svc.LoginFailed):
        svc.authenticate(db, "dave", "a long password")


def test_only_admins_manage_users_and_denials_name_the_role(db):
    operator = Principal("op", Role.operator)
    with pytest.raises(PermissionDenied, match="needs role admin"):
        svc.add_user(db, operator, "eve", Role.admin, "a long password")


def test_invalid_input_is_explained(db):
    with pytest.raises(svc.UserError, match="invalid user name"):
        svc.add_user(db, SYSTEM, "Bad Name", Role.viewer, "a long password")
    with pytest.raises(svc.UserError, match="too short"):
        svc.add_user(db, SYSTEM, "frank", Role.viewer, "short")
    with pytest.raises(svc.UserError, match="unknown role"):
        svc.parse_role("root")


def test_cli_add_generate_list_role_and_audit(settings, db):
    runner = CliRunner()
    added = runner.invoke(app, ["users", "add", "grace", "--role", "operator"], input="")
    assert added.exit_code == 0, added.output
    assert "password (shown once):" in added.output
    password = added.output.split("password (shown once):")[1].strip()
    assert svc.authenticate(db, "grace", password).role is Role.operator

    piped = runner.invoke(app, ["users", "add", "heidi", "--role", "viewer"], input="piped password 1\n")
    assert piped.exit_code == 0 and "shown once" not in piped.output
    assert svc.authenticate(db, "heidi", "piped password 1").role is Role.viewer

    assert runner.invoke(app, ["users", "role", "heidi", "admin"]).exit_code == 0
    listed = runner.invoke(app, ["users", "list", "--json"])
    assert '"name": "heidi"' in listed.output and '"role": "admin"' in listed.output

    denied = runner.invoke(app, ["--as", "grace", "users", "add", "ivan", "--role", "admin"], input="x" * 12)
    assert denied.exit_code == 2 and "needs role admin" in denied.output

    actions = [(e.actor, e.action, e.target) for e in audit.entries(db, area="users")]
    assert ("system", "create", "grace") in actions and ("system", "role", "heidi") in actions


def test_cli_unknown_as_user(settings):
    result = CliRunner().invoke(app, ["--as", "ghost", "users", "list"])
    assert result.exit_code == 2 and "no user named 'ghost'" in result.output
