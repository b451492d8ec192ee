"""`stream-platform secrets ...` end to end through the real CLI app: values via stdin/files, `--as`, `--json`."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from backend.cli import app
from backend.config import Settings
from backend.identity import users
from backend.identity.principal import SYSTEM, Role

runner = CliRunner()


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=input)
    return result.exit_code, result.output


def test_full_lifecycle(settings: Settings, tmp_path: Path) -> None:
    code, out = run("secrets", "create", "db-pass", "--label", "env=prod", "--rotation-period", "30d",
                    "--topic", "projects/p/topics/t", input="s3cret-one\n")
    assert code == 0, out
    value_file = tmp_path / "v2"
    value_file.write_text("s3cret-two\n", encoding="utf-8")
    assert run("secrets", "add-version", "db-pass", "--from-file", str(value_file)) == (0, "db-pass: added version 2\n")

    code, out = run("secrets", "list", "--json")
    listed = json.loads(out)["secrets"]
    assert code == 0 and [s["name"] for s in listed] == ["db-pass"] and listed[0]["labels"] == {"env": "prod"}
    assert "s3cret" not in out

    code, out = run("secrets", "describe", "db-pass", "--json")
    details = json.loads(out)
    assert [v["version"] for v in details["versions"]] == [2, 1] and details["meta"]["rotation_period"]

    assert run("secrets", "reveal", "db-pass") == (0, "s3cret-two\n")
    code, out = run("secrets", "reveal", "db-pass", "--version", "1", "--json")
    assert json.loads(out) == {"secret": "db-pass", "version": 1, "value": "s3cret-one"}

    code, out = run("secrets", "diff", "db-pass", "1", "--json")
    diffed = json.loads(out)
    assert (diffed["format"], diffed["changed"], diffed["changes"]) == ("text", True, []) and "s3cret" not in out
    assert run("secrets", "diff", "db-pass", "1") == (0, "db-pass: version 1 → 2 (text): changed, 10 → 10 characters\n")

    assert run("secrets", "disable", "db-pass", "2")[1].strip() == "db-pass version 2: DISABLED"
    assert run("secrets", "reveal", "db-pass") == (0, "s3cret-one\n")
    assert run("secrets", "enable", "db-pass", "2")[0] == 0
    code, out = run("secrets", "destroy", "db-pass", "1", input="n\n")
    assert code == 1 and "Aborted" in out
    assert run("secrets", "destroy", "db-pass", "1", "--yes")[1].strip() == "db-pass version 1: DESTROYED"
    code, out = run("secrets", "reveal", "db-pass", "--version", "1")
    assert code == 2 and "DESTROYED" in out

    code, out = run("secrets", "labels", "db-pass", "team=core", "--remove", "env", "--json")
    assert code == 0 and json.loads(out)["labels"] == {"team": "core"}
    code, out = run("secrets", "labels", "db-pass", "x=y", "--etag", '"stale"')
    assert code == 2 and "stale etag" in out

    code, out = run("secrets", "rotation-due", "--within", "31d", "--json")
    assert [s["secret"] for s in json.loads(out)] == ["db-pass"]

    code, out = run("secrets", "delete", "db-pass", input="wrong-name\n")
    assert code == 2 and "nothing deleted" in out
    assert run("secrets", "delete", "db-pass", input="db-pass\n")[0] == 0
    code, out = run("secrets", "describe", "db-pass")
    assert code == 2 and "not found" in out

    code, out = run("secrets", "audit", "db-pass", "--json")
    actions = [e["action"] for e in json.loads(out)]
    assert actions[:2] == ["describe", "delete"] and "reveal" in actions and "create" in actions
    assert "s3cret" not in out


def test_acting_user_roles(settings: Settings, db: psycopg.Connection) -> None:
    users.add_user(db, SYSTEM, "oscar", Role.operator, "operator-password-1")
    users.add_user(db, SYSTEM, "vera", Role.viewer, "viewer-password-1")
    assert run("secrets", "create", "shared", input="v\n")[0] == 0

    code, out = run("--as", "oscar", "secrets", "list")
    assert code == 0 and "shared" in out
    code, out = run("--as", "oscar", "secrets", "reveal", "shared")
    assert code == 2 and "oscar (operator) may not reveal secrets: needs role admin" in out
    code, out = run("--as", "vera", "secrets", "list")
    assert code == 2 and "needs role operator" in out
    denied = db.execute("SELECT actor, action FROM audit_log WHERE area = 'secrets' AND outcome = 'denied' "
                        "ORDER BY id").fetchall()
    assert [(r["actor"], r["action"]) for r in denied] == [("oscar", "reveal"), ("vera", "list")]


@pytest.mark.parametrize("args", [["--ttl", "soon"], ["--expire-time", "tomorrow"], ["--label", "novalue"]])
def test_bad_options_are_one_clear_line(settings: Settings, args: list[str]) -> None:
    code, out = run("secrets", "create", "x", *args, input="v\n")
    assert code == 2 and out.startswith("error: invalid") and "Traceback" not in out
