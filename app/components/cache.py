"""`st.cache_data` for service reads, which take the acting principal first.

The principal is part of each cache key by its name and role, so an answer computed for one user's role is never
served to another, and the key stays cheap to hash.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from backend.identity.principal import Principal

F = TypeVar("F", bound=Callable[..., Any])


def principal_key(principal: Principal) -> tuple[str, str]:
    return principal.name, principal.role.value


def cached(*, ttl: float, show_spinner: bool | str = False) -> Callable[[F], F]:
    """Cache a page's read for `ttl` seconds per distinct arguments, the principal included."""
    return st.cache_data(ttl=ttl, show_spinner=show_spinner, hash_funcs={Principal: principal_key})
