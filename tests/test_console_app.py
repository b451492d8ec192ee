"""The console shell in Streamlit's AppTest on a real migrated database: sign-in, lockout, navigation by role."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from backend.config import Settings, get_settings
from backend.console_auth import login
from backend.identity import users
from backend.identity.principal import SYSTEM, Principal, Role
from backend.identity.throttle import SignInPolicy

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


def test_wrong_passwords_back_off_this_address_without_locking_the_account(
    settings: Settings, people: dict[Role, str], db: psycopg.Connection
) -> None:
    at = _app().run()
    for _ in range(SignInPolicy().address.threshold):
        _sign_in(at, "oscar", "wrong-password-123")
        assert "principal" not in at.session_state
        assert [e.value for e in at.error] == ["invalid credentials or locked"]
    throttled = db.execute("SELECT locked_until FROM login_address_failures WHERE addr = '127.0.0.1'").fetchone()
    assert throttled["locked_until"] is not None, "failed logins must be committed so the backoff takes effect"
    assert db.execute("SELECT locked_until FROM users WHERE name = 'oscar'").fetchone()["locked_until"] is None

    _sign_in(at, "oscar")  # the right password does not help from this address while it waits
    assert "principal" not in at.session_state
    assert [e.value for e in at.error] == ["invalid credentials or locked"]
    assert login("oscar", PASSWORD, settings, addr="198.51.100.20").name == "oscar", "others still sign in"


def test_disabling_a_user_ends_their_session(settings: Settings, people: dict[Role, str],
                                             db: psycopg.Connection) -> None:
    at = _sign_in(_app().run(), "victor")
    assert at.session_state["principal"].name == "victor"
    users.set_disabled(db, SYSTEM, "victor", True)
    at.run()
    assert "principal" not in at.session_state


ISSUER = "https://idp.example.com"
SSO_SECRETS = {"auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "not-a-secret",
                        "client_id": "console", "client_secret": "not-a-secret",
                        "server_metadata_url": f"{ISSUER}/.well-known/openid-configuration"}}


def _sso(claims: dict[str, object]) -> AppTest:
    at = _app()
    at.secrets.update(SSO_SECRETS)
    at.user = {"is_logged_in": True, "iss": ISSUER, "sub": "42", **claims}
    return at.run()


def test_single_sign_on_needs_a_verified_email_from_an_allowed_issuer(
    settings: Settings, db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    users.add_user(db, SYSTEM, "jane@example.com", Role.operator, PASSWORD)
    monkeypatch.setenv("OIDC_ALLOWED_ISSUERS", json.dumps([ISSUER]))
    get_settings.cache_clear()

    unverified = _sso({"email": "jane@example.com", "email_verified": False})
    assert not unverified.exception and "principal" not in unverified.session_state
    assert [e.value for e in unverified.error] == ["Single sign-on: invalid credentials or locked"]

    verified = _sso({"email": "jane@example.com", "email_verified": True})
    assert not verified.exception and not [e for e in verified.error if "Single sign-on" in e.value]
    assert verified.session_state["principal"] == Principal("jane@example.com", Role.operator)

    monkeypatch.setenv("OIDC_ALLOWED_ISSUERS", json.dumps(["https://other-idp.example.com"]))
    get_settings.cache_clear()
    elsewhere = _sso({"email": "jane@example.com", "email_verified": True})
    assert "principal" not in elsewhere.session_state and elsewhere.error


def test_without_a_secrets_key_the_console_says_so_and_shows_nothing_else(settings: Settings, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRETS_LOCAL_KEY", raising=False)
    monkeypatch.setenv("SECRETS_LOCAL_PATH", str(tmp_path / "elsewhere" / "secrets.json"))
    get_settings.cache_clear()
    at = _app().run()
    get_settings.cache_clear()
    assert not at.exception
    assert [e.value for e in at.error] and "SECRETS_LOCAL_KEY" in at.error[0].value
    assert not at.text_input  # no sign-in form: nothing runs until the store can open
