"""Fuzz `/api/v1/alerts` from the app's own OpenAPI spec (schemathesis): whatever the input, no 5xx, and every answer
has a documented status, content type and body schema. Bounded and deterministic (fixed seed)."""

from __future__ import annotations

import pytest
import schemathesis
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
from backend.health.alerts import AlertPolicy, reconcile
from backend.health.findings import Finding, GpuHealth
from backend.identity.principal import SYSTEM, Role

from .crafted import NOW

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
APP = create_app(Settings(database_url="postgresql:///unset"))
schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", APP).include(path_regex=r"^/api/v1/alerts")


@pytest.fixture
def operator_token(settings, db):
    """Two alerts in this test's database, the app pointed at it, and an operator token."""
    hot = Finding("gpu_temperature", "warning", "GPU temperature high", {"gpu_temp": 88.0}, NOW, "check cooling")
    reconcile(db, [GpuHealth("GPU-1", "node-a", 0, "H100", "warning", [hot]),
                   GpuHealth("GPU-2", "node-a", 1, "H100", "warning", [hot])], NOW, AlertPolicy())
    APP.state.settings = settings
    yield tokens.create_token(db, SYSTEM, "fuzzer", Role.operator).value
    pool = getattr(APP.state, "db_pool", None)
    if pool is not None:
        pool.close()
        APP.state.db_pool = None


@schema.parametrize()
@settings(max_examples=30, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_alerts_api_never_fails_on_any_input(case, operator_token):
    case.call_and_validate(headers={"Authorization": f"Bearer {operator_token}"}, checks=CHECKS)
