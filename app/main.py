"""The console's entry: sign-in, then navigation built from the signed-in user's role.

Run with `streamlit run app/main.py` (the demo does). Pages live in `../pages/` and render only: they call
backend service functions with the session's principal, inside an error boundary.
"""

from __future__ import annotations

import logging

import components.charts  # noqa: F401 -- loads Plotly at start-up, not when the first chart page opens (~1 s)
import streamlit as st
from components import nav, session, warmup
from components.errors import guarded

from backend import settings_loader

st.set_page_config(page_title="Stream Platform Ops Console", page_icon=":material/bolt:", layout="wide")
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

settings_loader.install()  # before anything reads settings: `secret:` references resolve
warmup.start()
secrets_ready = False
with guarded("Secrets store"):  # no configured key, an unreachable project: one clear message, nothing else runs
    session.check_secrets_store()
    secrets_ready = True
if not secrets_ready:
    st.stop()
principal = None
with guarded("Session"):
    principal = session.signed_in()

if principal is None:
    st.navigation([st.Page(session.login_page, title="Sign in", icon=":material/login:")], position="hidden").run()
else:
    page = nav.navigation(principal)
    with st.sidebar:
        st.markdown(f"**{principal.name}** · {principal.role}")
        if st.button("Sign out", icon=":material/logout:", key="sign-out"):
            session.sign_out()
            st.rerun()
    with guarded():
        page.run()
