"""Import the backend areas once per server process, in the background, while the first user signs in.

The areas pull in heavy libraries (scikit-learn for failure risk, the Google clients for VMs): about 1.5 s that
would otherwise land on the first page a user opens after signing in.
"""

from __future__ import annotations

import logging
import threading

import streamlit as st
from components.backends import optional

log = logging.getLogger("console")
AREAS = (
    "backend.queries.fleet", "backend.queries.timeseries", "backend.queries.offenders", "backend.health.service",
    "backend.costs.spend", "backend.costs.projection", "backend.costs.tokens", "backend.costs.catalog",
    "backend.streams.live", "backend.streams.keys", "backend.vm.service", "backend.telemetry.pipeline_status",
    "backend.secrets.service",
)


def _import_all() -> None:
    for module in AREAS:
        try:
            optional(module)
        except ImportError as exc:  # a broken area shows its own error on its page; the warm-up goes on
            log.warning("warm-up could not import %s: %s", module, exc)


@st.cache_resource(show_spinner=False)
def start() -> threading.Thread:
    """Once per process (cached): a daemon thread importing every area."""
    thread = threading.Thread(target=_import_all, name="console-warm-up", daemon=True)
    thread.start()
    return thread


