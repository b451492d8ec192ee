"""Shared schemathesis set-up: each area fuzzes its own /api/v1 paths from the app's OpenAPI spec, bounded and
deterministic (fixed seed), against its own test database and a bearer token of the role it needs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from backend.api import tokens
from backend.api_app import create_app
from backend.config import Settings
from backend.identity.principal import SYSTEM, Role

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

APP = create_app(Settings(database_url="postgresql:///unset"))
"""Built once so schemathesis can read the spec at collection; `bearer_for` points it at each test's database."""


def schema(path_regex: str) -> schemathesis.Schema:
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", APP).include(path_regex=path_regex)


def bounded(max_examples: int) -> hypothesis_settings:
    return hypothesis_settings(
        max_examples=max_examples, derandomize=True, deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@contextmanager
def bearer_for(settings: Settings, db: psycopg.Connection, role: Role) -> Iterator[dict[str, str]]:
    """Point the app at this test's database and yield an Authorization header; close the app's pool after."""
    APP.state.settings = settings
    try:
        yield {"Authorization": f"Bearer {tokens.create_token(db, SYSTEM, 'fuzzer', role).value}"}
    finally:
        pool = getattr(APP.state, "db_pool", None)
        if pool is not None:
            pool.close()
            APP.state.db_pool = None
