"""Who is signed in. The `Principal` lives in `st.session_state` and is passed to every backend service call."""

from __future__ import annotations

import streamlit as st
from components import charts
from components.errors import guarded

from backend import console_auth
from backend.config import get_settings
from backend.identity.principal import Principal
from backend.identity.users import LoginFailed
from backend.secrets.backends import backend_for

_KEY = "principal"


def principal() -> Principal:
    """The signed-in principal; pages run only after sign-in, so this always answers there."""
    return st.session_state[_KEY]


def signed_in() -> Principal | None:
    """The session's principal, re-read from the users table so disabling a user or changing a role bites at once."""
    found: Principal | None = st.session_state.get(_KEY)
    if found is None and _oidc_configured() and st.user.is_logged_in:
        with guarded("Single sign-on"):
            found = console_auth.login_oidc(st.user.to_dict())
    if found is None:
        return None
    fresh = console_auth.current(found)
    if fresh is None:
        sign_out()
        return None
    st.session_state[_KEY] = fresh
    return fresh


def sign_out() -> None:
    """Forget the whole session: all of it (reveal widgets, messages, a key handed over to be shown once)
    belonged to the user who signs out."""
    st.session_state.clear()
    if _oidc_configured() and st.user.is_logged_in:
        st.logout()


def check_secrets_store() -> None:
    """Open the configured secrets store once per process: a store that cannot open refuses here, in one line."""
    backend_for(get_settings())


def _client_address() -> str:
    """Where this browser connects from, as the sign-in throttle counts it (see `console_auth.client_address`)."""
    return console_auth.client_address(st.context.ip_address, st.context.headers.get("X-Forwarded-For"),
                                       get_settings().console_trusted_proxies)


def _oidc_configured() -> bool:
    return st.secrets.load_if_toml_exists() and "auth" in st.secrets


def login_page() -> None:
    """The only page before sign-in: user name and password, or single sign-on when `[auth]` is configured."""
    st.title("Stream Platform Ops Console")
    st.caption("GPU fleet health, spend, live streams, VMs and secrets in one place.")
    with st.form("login", border=True):
        name = st.text_input("User name", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        with guarded():  # a database outage or a bad CONSOLE_TRUSTED_PROXIES: one line, not a traceback
            try:
                st.session_state[_KEY] = console_auth.login(name, password, addr=_client_address())
            except LoginFailed as exc:
                st.error(str(exc), icon=":material/lock:")
            else:
                st.rerun()
    if _oidc_configured():
        st.divider()
        if st.button("Sign in with single sign-on", icon=":material/badge:"):
            st.login()
    charts.preload()
    st.caption("First time? `make demo` prints the admin login; admins add users with `stream-platform users add`.")
