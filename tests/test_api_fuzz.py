"""Fuzz the /api/v1 endpoints from their own OpenAPI spec (schemathesis): whatever the input, no 5xx, and every
answer has a documented status, content type and body schema. Bounded and deterministic (fixed seed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import schemathesis
from analytics_data import Gpu, samples, store
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from backend.api import tokens
from backend.api.app import create_app
from backend.config import Settings
from backend.identity.principal import SYSTEM, Role

OURS = r"^/api/v1/(gpus|hosts|offenders|costs|metrics)"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


APP = create_app(Settings(database_url="postgresql:///unset"))
"""Built once so schemathesis can read its spec at collection; each test points it at its own database."""
schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", APP).include(path_regex=OURS)


@pytest.fixture
def admin_token(settings, db):
    """A seeded database with one GPU and token usage, the app pointed at it, and an admin token."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    gpu = Gpu("GPU-a", "node-1", 0, "NVIDIA L4", {"team": "x"})
    store(settings, samples(gpu, now - timedelta(minutes=5), 5, gpu_temp=50.0, gpu_util=20.0),
          [(now - timedelta(minutes=1), gpu, "m", 60.0, 1, 10, 10, 1.0, 2.0)])
    APP.state.settings = settings
    yield tokens.create_token(db, SYSTEM, "fuzzer", Role.admin).value
    pool = getattr(APP.state, "db_pool", None)
    if pool is not None:
        pool.close()
        APP.state.db_pool = None


@schema.parametrize()
@settings(max_examples=10, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_api_never_fails_on_any_input(case, admin_token):
    case.call_and_validate(headers={"Authorization": f"Bearer {admin_token}"}, checks=CHECKS)
