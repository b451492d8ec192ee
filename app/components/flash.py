"""Messages that survive the rerun after an action, so tables re-read after a change and still say what happened."""

from __future__ import annotations

from typing import Any, Literal

import streamlit as st

_KEY = "flash"
_ONCE = "flash-once"


def flash(message: str, kind: Literal["success", "warning"] = "success") -> None:
    st.session_state.setdefault(_KEY, []).append((kind, message))


def show() -> None:
    """Show and forget the messages queued by the previous run."""
    for kind, message in st.session_state.pop(_KEY, []):
        (st.success if kind == "success" else st.warning)(message, icon=":material/check_circle:"
                                                          if kind == "success" else ":material/warning:")


def hand_over(name: str, value: Any) -> None:
    """Keep a value (a freshly issued key) for exactly the next run; `take` removes it when shown."""
    st.session_state.setdefault(_ONCE, {})[name] = value


def take(name: str) -> Any | None:
    return st.session_state.get(_ONCE, {}).pop(name, None)
