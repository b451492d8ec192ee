"""Fuzz `/api/v1/alerts` from the app's own OpenAPI spec (schemathesis): whatever the input, no 5xx, and every answer
has a documented status, content type and body schema. Bounded and deterministic (fixed seed)."""

from __future__ import annotations

import pytest
from api_fuzz import CHECKS, bearer_for, bounded, schema

from backend.health.alerts import AlertPolicy, reconcile
from backend.health.findings import Finding, GpuHealth
from backend.identity.principal import Role

from .crafted import NOW

SCHEMA = schema(r"^/api/v1/alerts")


@pytest.fixture
def operator_headers(settings, db):
    """Two alerts in this test's database, the app pointed at it, and an operator token."""
    hot = Finding("gpu_temperature", "warning", "GPU temperature high", {"gpu_temp": 88.0}, NOW, "check cooling")
    reconcile(db, [GpuHealth("GPU-1", "node-a", 0, "H100", "warning", [hot]),
                   GpuHealth("GPU-2", "node-a", 1, "H100", "warning", [hot])], NOW, AlertPolicy())
    with bearer_for(settings, db, Role.operator) as headers:
        yield headers


@SCHEMA.parametrize()
@bounded(30)
def test_alerts_api_never_fails_on_any_input(case, operator_headers):
    case.call_and_validate(headers=operator_headers, checks=CHECKS)
