"""Fuzz the /api/v1 endpoints from their own OpenAPI spec (schemathesis): whatever the input, no 5xx, and every
answer has a documented status, content type and body schema. Bounded and deterministic (fixed seed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from analytics_data import Gpu, samples, store
from api_fuzz import CHECKS, bearer_for, bounded, schema

from backend.identity.principal import Role

SCHEMA = schema(r"^/api/v1/(gpus|hosts|offenders|costs|metrics)")


@pytest.fixture
def admin_headers(settings, db):
    """A seeded database with one GPU and token usage, the app pointed at it, and an admin token."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    gpu = Gpu("GPU-a", "node-1", 0, "NVIDIA L4", {"team": "x"})
    store(settings, samples(gpu, now - timedelta(minutes=5), 5, gpu_temp=50.0, gpu_util=20.0),
          [(now - timedelta(minutes=1), gpu, "m", 60.0, 1, 10, 10, 1.0, 2.0)])
    with bearer_for(settings, db, Role.admin) as headers:
        yield headers


@SCHEMA.parametrize()
@bounded(10)
def test_api_never_fails_on_any_input(case, admin_headers):
    case.call_and_validate(headers=admin_headers, checks=CHECKS)
