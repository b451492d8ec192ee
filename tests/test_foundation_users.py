"""Identity: users, roles, lockout, the acting principal."""

from __future__ import annotations

import os
import pwd

import psycopg
import pytest
from typer.testing import CliRunner

from backend import audit
from backend.cli import app
from backend.errors import InvalidInput
from backend.identity import SYSTEM, PermissionDenied, Principal, Role, parse_role
from backend.identity import users as svc

ADDR = "198.51.100.20"


def test_add_and_authenticate(db):
    svc.add_user(db, SYSTEM, "alice", Role.operator, "correct horse battery")
    principal = svc.authenticate(db, "alice", "correct horse battery", addr=ADDR)
    assert principal == Principal("alice", Role.operator)
    stored = db.execute("SELECT password_hash FROM users WHERE name='alice'").fetchone()["password_hash"]
    assert stored.startswith("$argon2id$") and "correct horse" not in stored


def test_wrong_password_and_unknown_user_fail_alike(db):
    svc.add_user(db, SYSTEM, "bob", Role.viewer, "a long password")
    with pytest.raises(svc.LoginFailed) as wrong:
        svc.authenticate(db, "bob", "nope nope nope", addr=ADDR)
    with pytest.raises(svc.LoginFailed) as unknown:
        svc.authenticate(db, "nobody", "nope nope nope", addr=ADDR)
    assert str(wrong.value) == str(unknown.value) == "invalid credentials or locked"


def test_disabled_user_cannot_log_in(db):
    svc.add_user(db, SYSTEM, "dave", Role.admin, "a long password")
    svc.set_disabled(db, SYSTEM, "dave", True)
    with pytest.raises(svc.LoginFailed, match=r"^invalid credentials or locked$"):
        svc.authenticate(db, "dave", "a long password", addr=ADDR)


def test_only_admins_manage_users_and_denials_name_the_role(db):
    operator = Principal("op", Role.operator)
    with pytest.raises(PermissionDenied, match="needs role admin"):
        svc.add_user(db, operator, "eve", Role.admin, "a long password")


def test_invalid_input_is_explained(db):
    with pytest.raises(svc.UserError, match="invalid user name"):
        svc.add_user(db, SYSTEM, "Bad Name", Role.viewer, "a long password")
    with pytest.raises(svc.UserError, match="too short"):
        svc.add_user(db, SYSTEM, "frank", Role.viewer, "short")
    with pytest.raises(InvalidInput, match="unknown role 'root': choose admin, operator or viewer"):
        parse_role("root")


def test_names_and_roles_with_a_trailing_newline_are_refused(db):
    with pytest.raises(svc.UserError, match="invalid user name"):
        svc.add_user(db, SYSTEM, "admin\n", Role.viewer, "a long password")
    with pytest.raises(InvalidInput, match="unknown role"):
        parse_role("admin\n")
    assert svc.get_user(db, "admin\n") is None


def test_users_and_api_tokens_refuse_an_unknown_role_with_the_same_line(db):
    runner = CliRunner()
    answers = [runner.invoke(app, args, input="a long password\n") for args in (
        ["users", "add", "mallory", "--role", "root"], ["users", "role", "mallory", "root"],
        ["api", "tokens", "create", "--role", "root", "--name", "x"])]
    assert [(a.exit_code, a.output.strip()) for a in answers] == [
        (2, "error: unknown role 'root': choose admin, operator or viewer")] * 3
    assert svc.get_user(db, "mallory") is None


def test_system_is_reserved_for_the_local_cli(db):
    with pytest.raises(svc.UserError, match="'system' is reserved"):
        svc.add_user(db, SYSTEM, "system", Role.admin, "a long password")
    result = CliRunner().invoke(app, ["users", "add", "system", "--role", "viewer"], input="a long password\n")
    assert result.exit_code == 2 and "'system' is reserved" in result.output
    svc.add_user(db, SYSTEM, "sysop", Role.viewer, "a long password")
    with pytest.raises(psycopg.errors.CheckViolation, match="reserved"):
        db.execute("UPDATE users SET name = 'system' WHERE name = 'sysop'")
    assert svc.get_user(db, "system") is None


def test_cli_add_generate_list_role_and_audit(settings, db):
    runner = CliRunner()
    added = runner.invoke(app, ["users", "add", "grace", "--role", "operator"], input="")
    assert added.exit_code == 0, added.output
    assert "password (shown once):" in added.output
    password = added.output.split("password (shown once):")[1].strip()
    assert svc.authenticate(db, "grace", password, addr=ADDR).role is Role.operator

    piped = runner.invoke(app, ["users", "add", "heidi", "--role", "viewer"], input="piped password 1\n")
    assert piped.exit_code == 0 and "shown once" not in piped.output
    assert svc.authenticate(db, "heidi", "piped password 1", addr=ADDR).role is Role.viewer

    assert runner.invoke(app, ["users", "role", "heidi", "admin"]).exit_code == 0
    listed = runner.invoke(app, ["users", "list", "--json"])
    assert '"name": "heidi"' in listed.output and '"role": "admin"' in listed.output

    denied = runner.invoke(app, ["--as", "grace", "users", "add", "ivan", "--role", "admin"], input="x" * 12)
    assert denied.exit_code == 2 and "needs role admin" in denied.output

    actions = [(e.actor, e.action, e.target) for e in audit.entries(db, area="users")]
    assert ("system", "create", "grace") in actions and ("system", "role", "heidi") in actions


def test_audit_rows_name_the_os_user_next_to_the_acting_user(settings, db):
    svc.add_user(db, SYSTEM, "grace", Role.admin, "a long password")
    result = CliRunner().invoke(app, ["--as", "grace", "users", "role", "grace", "operator"],
                                env={"USER": "someone-else", "LOGNAME": "someone-else"})
    assert result.exit_code == 0, result.output
    newest = audit.entries(db, area="users", limit=1)[0]
    assert (newest.actor, newest.action) == ("grace", "role")
    assert newest.os_user == pwd.getpwuid(os.getuid()).pw_name, "the real uid, not $USER, which anyone can set"
    stored = db.execute("SELECT os_user FROM audit_log WHERE id = %s", (newest.id,)).fetchone()["os_user"]
    assert stored == newest.os_user


def test_cli_unknown_as_user(settings):
    result = CliRunner().invoke(app, ["--as", "ghost", "users", "list"])
    assert result.exit_code == 2 and "no user named 'ghost'" in result.output


def test_cli_list_shows_a_lock_only_while_it_lasts(settings, db):
    svc.add_user(db, SYSTEM, "ivan", Role.viewer, "a long password")
    svc.add_user(db, SYSTEM, "judy", Role.viewer, "a long password")
    db.execute("UPDATE users SET locked_until = now() - interval '1 hour' WHERE name = 'ivan'")
    db.execute("UPDATE users SET locked_until = now() + interval '1 hour' WHERE name = 'judy'")
    listed = CliRunner().invoke(app, ["users", "list"]).output
    states = {cells[1]: cells[3] for cells in ([c.strip() for c in line.split("│")] for line in listed.splitlines())
              if len(cells) > 3}
    assert states["ivan"] == "active"
    assert states["judy"].startswith("locked until")
