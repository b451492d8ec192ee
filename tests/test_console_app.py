"""The console shell in Streamlit's AppTest on a real migrated database: sign-in, lockout, navigation by role."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from backend.config import Settings
from backend.identity import users
from backend.identity.principal import SYSTEM, Role

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
PASSWORD = "correct-horse-battery"


def _app() -> AppTest:
    return AppTest.from_file(MAIN, default_timeout=60)



@pytest.fixture(autouse=True)
def _fresh_caches() -> None:
    """Each test has its own database; cached query results from another test's database must not show."""
    st.cache_data.clear()

@pytest.fixture
def people(db: psycopg.Connection) -> dict[Role, str]:
    names = {Role.admin: "alice", Role.operator: "oscar", Role.viewer: "victor"}
    for role, name in names.items():
        users.add_user(db, SYSTEM, name, role, PASSWORD)
    return names


def _sign_in(at: AppTest, name: str, password: str = PASSWORD) -> AppTest:
    at.text_input[0].input(name)
    at.text_input[1].input(password)
    at.button[0].click()
    return at.run()


def test_login_page_then_sign_in_and_out(kafka_settings: Settings, people: dict[Role, str]) -> None:
    at = _app().run()
    assert [t.label for t in at.text_input] == ["User name", "Password"]
    assert not at.exception

    _sign_in(at, "alice")
    assert not at.exception and not at.error
    assert at.session_state["principal"].name == "alice"
    assert "alice" in at.sidebar.markdown[0].value and "admin" in at.sidebar.markdown[0].value

    at.sidebar.button(key="sign-out").click().run()
    assert "principal" not in at.session_state
    assert [t.label for t in at.text_input] == ["User name", "Password"]


def test_wrong_password_is_refused_and_locks_after_repeated_failures(
    settings: Settings, people: dict[Role, str], db: psycopg.Connection
) -> None:
    at = _app().run()
    for _ in range(users.MAX_FAILED_LOGINS):
        _sign_in(at, "oscar", "wrong-password-123")
        assert "principal" not in at.session_state
    assert "wrong user name or password" in at.error[0].value or "locked" in at.error[0].value
    locked = db.execute("SELECT locked_until FROM users WHERE name = 'oscar'").fetchone()["locked_until"]
    assert locked is not None, "failed logins must be committed so the lockout takes effect"

    _sign_in(at, "oscar")  # the right password no longer helps while locked
    assert "principal" not in at.session_state
    assert "locked" in at.error[0].value


def test_disabling_a_user_ends_their_session(settings: Settings, people: dict[Role, str],
                                             db: psycopg.Connection) -> None:
    at = _sign_in(_app().run(), "victor")
    assert at.session_state["principal"].name == "victor"
    users.set_disabled(db, SYSTEM, "victor", True)
    at.run()
    assert "principal" not in at.session_state
