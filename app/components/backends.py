"""Pages reach the backend areas through here, so a page whose backend is not installed says so plainly."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

import streamlit as st


def optional(module: str) -> ModuleType | None:
    """The backend module, or `None` when that area is not part of this installation."""
    try:
        if importlib.util.find_spec(module) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(module)


def not_available(what: str) -> None:
    st.info(f"{what} is not available yet in this installation: its backend module is not installed.",
            icon=":material/construction:")


def require(module: str, what: str) -> ModuleType:
    """The backend module; otherwise a clear "not available yet" state and the page stops."""
    found = optional(module)
    if found is None:
        not_available(what)
        st.stop()
    return found
