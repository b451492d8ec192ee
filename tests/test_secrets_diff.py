"""The payload diff on its own: what a masked diff may say about a value, and when it goes key by key."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from backend.secrets.diff import SecretDiff, diff_payloads

FERNET_OLD, FERNET_NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()
URL_OLD = "postgresql://app:pw-4c1d9e@db.internal:5432/app?sslmode=require"
URL_NEW = "postgresql://app:pw-77aa02@db.internal:5432/app?sslmode=verify-full"


def _diff(old: str, new: str, *, reveal: bool = False) -> SecretDiff:
    return diff_payloads("s", 1, SecretStr(old), 2, SecretStr(new), reveal=reveal)


def _shown(diff: SecretDiff) -> str:
    """Everything a masked diff puts in front of a user (the CLI and API print the same fields)."""
    return repr(diff) + " ".join(c.key for c in diff.changes)


@pytest.mark.parametrize(("old", "new"), [
    (FERNET_OLD, FERNET_NEW),  # base64 ending in '=': the part before it once showed as a "key"
    ("dGhpcyBpcyBhIHNlY3JldA==", "b3RoZXIgc2VjcmV0IHZhbHVl"),
    (URL_OLD, URL_NEW),  # everything before '?sslmode=' (password included) once showed as a "key"
    ("TOKEN=abc123", "TOKEN=def456"),  # one KEY=VALUE line is a value, not a document
    (f"{FERNET_OLD}\n{FERNET_NEW}", f"{FERNET_NEW}\n{FERNET_OLD}"),  # several base64 lines are not KEY=VALUE
    (f"{URL_OLD}\n{URL_NEW}", f"{URL_NEW}\n{URL_OLD}"),
], ids=["fernet-key", "base64", "url", "one-pair", "base64-lines", "url-lines"])
def test_a_masked_diff_of_a_plain_value_says_only_changed_and_length(old: str, new: str) -> None:
    diff = _diff(old, new)
    shown = _shown(diff)
    for value in (old, new):
        for line in value.splitlines():
            for part in {line[:8], line[-12:-2], line.split("=")[0][:16]}:
                assert part not in shown
    assert (diff.format, diff.changes, diff.changed) == ("text", [], True)
    assert (diff.old_length, diff.new_length) == (len(old), len(new))


def test_an_unchanged_plain_value_says_unchanged() -> None:
    diff = _diff(URL_OLD, URL_OLD)
    assert (diff.format, diff.changes, diff.changed, diff.old_length) == ("text", [], False, len(URL_OLD))


def test_multi_line_key_value_text_and_json_objects_go_key_by_key_with_keys_only() -> None:
    env = _diff("DB_USER=app\nDB_PASS=old-pass\nREMOVED=1\n", "export DB_USER=app\nDB_PASS=new-pass\nADDED=\n")
    assert env.format == "env" and env.changed
    assert [(c.key, c.kind, c.old, c.new) for c in env.changes] == [
        ("ADDED", "added", None, None), ("DB_PASS", "changed", None, None), ("REMOVED", "removed", None, None)]
    assert "old-pass" not in repr(env) and "new-pass" not in repr(env)

    doc = _diff('{"db": {"user": "a", "pass": "p1"}}', '{"db": {"user": "a", "pass": "p2"}, "tls": true}')
    assert doc.format == "json"
    assert [(c.key, c.kind, c.old, c.new) for c in doc.changes] == [("db.pass", "changed", None, None),
                                                                    ("tls", "added", None, None)]


def test_revealed_diffs_show_values_line_by_line_or_key_by_key() -> None:
    lines = _diff(URL_OLD, URL_NEW, reveal=True)
    assert lines.format == "lines" and lines.revealed
    (change,) = lines.changes
    assert change.key == "line 1" and change.old and change.new
    assert (change.old.get_secret_value(), change.new.get_secret_value()) == (URL_OLD, URL_NEW)
    assert URL_NEW not in repr(lines)

    env = _diff("A=1\nB=2\n", "A=1\nB=3\n", reveal=True)
    assert [(c.key, c.old.get_secret_value(), c.new.get_secret_value()) for c in env.changes  # type: ignore[union-attr]
            ] == [("B", "2", "3")]
