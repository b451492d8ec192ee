"""The error boundary: a failing panel shows one short, safe message and the rest of the page keeps working."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import ParamSpec, TypeVar

import psycopg
import streamlit as st

from backend.errors import PlatformError, Unavailable
from backend.identity.principal import PermissionDenied

log = logging.getLogger("console")
P = ParamSpec("P")
R = TypeVar("R")


def message_for(exc: BaseException) -> str:
    """What the user reads: our errors' own messages are safe; anything else gets a reference to the log."""
    if isinstance(exc, Unavailable):
        return f"Unavailable: {exc}"
    if isinstance(exc, PermissionDenied | PlatformError):
        return str(exc)
    if isinstance(exc, psycopg.OperationalError):
        return "The database cannot be reached right now. Check DATABASE_URL and that PostgreSQL is running."
    reference = uuid.uuid4().hex[:8]
    log.error("console error %s", reference, exc_info=exc)
    return f"Something went wrong (reference {reference} in the console log)."


@contextmanager
def guarded(what: str | None = None) -> Iterator[None]:
    """Run a panel; on error show a short message box instead of a traceback."""
    prefix = f"{what}: " if what else ""
    try:
        yield
    except Unavailable as exc:  # the environment, not a fault: say what is missing
        st.warning(prefix + str(exc), icon=":material/cloud_off:")
    except (PlatformError, PermissionDenied, psycopg.Error) as exc:
        st.error(prefix + message_for(exc), icon=":material/error:")
    except Exception as exc:  # the last line of defence: never a traceback in the browser
        st.error(prefix + message_for(exc), icon=":material/error:")


def boundary(what: str) -> Callable[[Callable[P, R]], Callable[P, R | None]]:
    """`guarded` for a whole function: fragments handle their own errors, so their bodies need the boundary."""

    def decorate(func: Callable[P, R]) -> Callable[P, R | None]:
        @wraps(func)
        def run(*args: P.args, **kwargs: P.kwargs) -> R | None:
            with guarded(what):
                return func(*args, **kwargs)
            return None

        return run

    return decorate
