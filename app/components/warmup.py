"""Import the backend areas once per server process, in the background, while the first user signs in.

The areas pull in heavy libraries (scikit-learn for failure risk, the Google clients for VMs): about 1.5 s that
would otherwise land on the first page a user opens after signing in.
"""

from __future__ import annotations

import logging
import threading

import streamlit as st

log = logging.getLogger("console")


def _import_all() -> None:
    """Import what the pages import; the modules land in `sys.modules`, so the pages find them loaded."""
    try:
        from backend.costs import service as costs
        from backend.health import service as health
        from backend.queries import service as queries
        from backend.secrets import service as secrets
        from backend.streams import service as streams
        from backend.telemetry import pipeline_status
        from backend.vm import service as vm
    except ImportError as exc:  # the page that needs the module shows the error; the console goes on
        log.warning("warm-up could not import the backend: %s", exc)
        return
    log.debug("warm-up imported %s", ", ".join(m.__name__ for m in (costs, health, queries, secrets, streams,
                                                                     pipeline_status, vm)))


@st.cache_resource(show_spinner=False)
def start() -> threading.Thread:
    """Once per process (cached): a daemon thread importing every area."""
    thread = threading.Thread(target=_import_all, name="console-warm-up", daemon=True)
    thread.start()
    return thread


