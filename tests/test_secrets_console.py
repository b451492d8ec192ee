"""The Secrets page in Streamlit's AppTest: a diff's values show only in the run that asked for them, are audited
once, are hidden again by the next run or the fragment's timer, and no reveal state outlives sign-out."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.local_script_runner import LocalScriptRunner

from backend.config import Settings
from backend.identity import users
from backend.identity.principal import SYSTEM, Principal, Role
from backend.secrets.service import get_service

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
OLD, NEW = "old-pass-5e1d", "new-pass-9c4a"
REVEAL_SECONDS = 20  # pages/secrets.py


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[ForwardMsg]:
    """The messages of the latest run as the browser gets them (AppTest's element tree drops timers)."""
    messages: list[ForwardMsg] = []
    original = LocalScriptRunner.forward_msgs

    def recording(self: LocalScriptRunner) -> list[ForwardMsg]:
        found = original(self)
        messages[:] = found
        return found

    monkeypatch.setattr(LocalScriptRunner, "forward_msgs", recording)
    return messages


@pytest.fixture
def page(settings: Settings, db: psycopg.Connection) -> AppTest:
    """An admin on the Secrets page, with a secret of two versions selected."""
    for name in ("alice", "bob"):
        users.add_user(db, SYSTEM, name, Role.admin, "correct-horse-battery")
    service, alice = get_service(settings), Principal("alice", Role.admin)
    service.create(alice, "app-env", value=f"DB_USER=app\nDB_PASS={OLD}\n")
    service.add_version(alice, "app-env", f"DB_USER=app\nDB_PASS={NEW}\n")
    return _on_secrets_page(AppTest.from_file(MAIN, default_timeout=60), alice)


def _on_secrets_page(at: AppTest, who: Principal) -> AppTest:
    at.session_state["principal"] = who
    at.run()
    at.switch_page("../pages/secrets.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Secrets"
    return at


def _tables(at: AppTest) -> str:
    return " ".join(frame.value.to_csv() for frame in at.dataframe)


def _revealed_diffs(db: psycopg.Connection) -> int:
    return db.execute("SELECT count(*) AS n FROM audit_log WHERE area = 'secrets' AND action = 'diff' "
                      "AND detail->>'revealed' = 'true'").fetchone()["n"]


def _timers_over(messages: list[ForwardMsg], text: str) -> set[float]:
    """The auto-rerun intervals of the fragments whose elements show `text`."""
    timers = {m.auto_rerun.fragment_id: m.auto_rerun.interval for m in messages if m.HasField("auto_rerun")}
    showing = {m.delta.fragment_id for m in messages
               if m.HasField("delta") and text.encode() in m.delta.new_element.SerializeToString()}
    return {timers.get(fragment, 0.0) for fragment in showing}


def test_diff_values_show_once_audited_once_then_hide(page: AppTest, db: psycopg.Connection,
                                                     sent: list[ForwardMsg]) -> None:
    at = page
    assert "DB_PASS" in _tables(at) and NEW not in _tables(at) and _revealed_diffs(db) == 0

    at.button(key="reveal-diff-app-env").click().run()
    assert OLD in _tables(at) and NEW in _tables(at)
    assert _revealed_diffs(db) == 1
    assert _timers_over(sent, NEW) == {REVEAL_SECONDS}, "the fragment's timer hides them without any action"

    at.run()  # any rerun, as the fragment's timer does
    assert NEW not in _tables(at) and "DB_PASS" in _tables(at)
    assert _revealed_diffs(db) == 1, "a rerun does not reveal (and audit) again"


def test_sign_out_clears_every_reveal_state(page: AppTest, db: psycopg.Connection) -> None:
    at = page
    at.selectbox(key="reveal-version-app-env").select(1).run()
    at.button(key="reveal-diff-app-env").click().run()
    assert NEW in _tables(at)
    at.session_state["flash-once"] = {"issued-key": "sk-live-3f9a"}  # a key handed over to be shown once

    at.button(key="sign-out").click().run()
    assert "principal" not in at.session_state
    assert not [key for key in at.session_state if "reveal" in str(key) or "flash" in str(key)]

    at = _on_secrets_page(at, Principal("bob", Role.admin))
    assert NEW not in _tables(at) and OLD not in _tables(at) and not at.code
    assert _revealed_diffs(db) == 1
