"""Bearer-token authentication for `/api/v1`: `Depends(require_role(Role.viewer))` returns the `Principal`.

A missing or bad token is 401 with `WWW-Authenticate: Bearer`; a valid token whose role is too low is 403.
Tokens are issued with `stream-platform api tokens create --role R --name N` (see `backend/api/tokens.py`).
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from fastapi import Depends, HTTPException, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend.api import tokens
from backend.api.deps import db
from backend.identity.principal import Principal, Role
from backend.identity.principal import require_role as check_role

bearer = HTTPBearer(auto_error=False, description="An API token: `stream-platform api tokens create --role viewer`")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def require_role(minimum: Role) -> Callable[..., Principal]:
    """A dependency that authenticates the bearer token and requires at least `minimum`."""

    def dependency(
        credentials: HTTPAuthorizationCredentials | None = Security(bearer),
        conn: psycopg.Connection = Depends(db),
    ) -> Principal:
        if credentials is None:
            raise HTTPException(401, "missing bearer token: send `Authorization: Bearer <token>`", headers=_CHALLENGE)
        principal = tokens.authenticate(conn, credentials.credentials)
        if principal is None:
            raise HTTPException(401, "invalid, expired or revoked API token", headers=_CHALLENGE)
        check_role(principal, minimum, f"use this endpoint with a {principal.role} token")
        return principal

    return dependency


viewer = require_role(Role.viewer)
operator = require_role(Role.operator)
admin = require_role(Role.admin)
