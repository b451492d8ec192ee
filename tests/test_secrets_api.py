"""`/api/v1/secrets`: the REST mapping of the service — status codes, role enforcement by the service, no values
in metadata answers; and a bounded schemathesis fuzz of the secrets endpoints (no 5xx, documented answers)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from api_fuzz import CHECKS, bearer_for, bounded, schema
from fastapi.testclient import TestClient

from backend.api import tokens
from backend.api_app import create_app
from backend.config import Settings
from backend.identity.principal import SYSTEM, Role

SCHEMA = schema(r"^/api/v1/secrets")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _auth(db: psycopg.Connection, role: Role) -> dict[str, str]:
    token = tokens.create_token(db, SYSTEM, f"t-{role}", role).value
    return {"Authorization": f"Bearer {token}"}


def test_lifecycle_over_rest(client: TestClient, db: psycopg.Connection) -> None:
    admin = _auth(db, Role.admin)
    created = client.post("/api/v1/secrets", headers=admin,
                          json={"name": "api-key", "value": "K=v1", "labels": {"env": "prod"}, "ttl_seconds": 86400})
    assert created.status_code == 201, created.text
    assert created.json()["versions"][0]["version"] == 1 and "v1" not in created.text
    assert client.post("/api/v1/secrets", headers=admin, json={"name": "api-key"}).status_code == 409

    assert client.post("/api/v1/secrets/api-key/versions", headers=admin, json={"value": "K=v2"}).status_code == 201
    listed = client.get("/api/v1/secrets", headers=admin, params={"label": "env=prod"}).json()
    assert [s["name"] for s in listed["secrets"]] == ["api-key"]

    value = client.get("/api/v1/secrets/api-key/versions/latest/value", headers=admin).json()
    assert value == {"secret": "api-key", "version": 2, "value": "K=v2"}
    diff = client.get("/api/v1/secrets/api-key/diff", headers=admin, params={"old": "1"}).json()
    assert (diff["format"], diff["changed"], diff["old_length"], diff["new_length"], diff["changes"]) == (
        "text", True, 4, 4, [])

    disabled = client.post("/api/v1/secrets/api-key/versions/2/disable", headers=admin)
    assert disabled.json()["state"] == "DISABLED"
    assert client.get("/api/v1/secrets/api-key/versions/2/value", headers=admin).status_code == 400

    etag = client.get("/api/v1/secrets/api-key", headers=admin).json()["meta"]["etag"]
    assert client.put("/api/v1/secrets/api-key/labels", headers=admin,
                      json={"labels": {"env": "dev"}, "etag": etag}).status_code == 200
    stale = client.put("/api/v1/secrets/api-key/labels", headers=admin, json={"labels": {}, "etag": etag})
    assert stale.status_code == 409 and "stale etag" in stale.json()["error"]

    assert client.delete("/api/v1/secrets/api-key", headers=admin).status_code == 204
    assert client.get("/api/v1/secrets/api-key", headers=admin).status_code == 404
    actions = [e["action"] for e in client.get("/api/v1/secrets-audit", headers=admin).json()]
    assert actions[:2] == ["describe", "delete"]


def test_roles_are_enforced_by_the_service(client: TestClient, db: psycopg.Connection) -> None:
    client.post("/api/v1/secrets", headers=_auth(db, Role.admin), json={"name": "s", "value": "x"})
    operator, viewer = _auth(db, Role.operator), _auth(db, Role.viewer)
    assert client.get("/api/v1/secrets/s", headers=operator).status_code == 200
    assert client.get("/api/v1/secrets-rotation-due", headers=operator).json() == []
    denied = client.get("/api/v1/secrets/s/versions/latest/value", headers=operator)
    assert denied.status_code == 403 and "needs role admin" in denied.json()["error"]
    assert client.get("/api/v1/secrets", headers=viewer).status_code == 403
    assert client.get("/api/v1/secrets").status_code == 401
    rows = db.execute("SELECT action FROM audit_log WHERE area = 'secrets' AND outcome = 'denied'").fetchall()
    assert sorted(r["action"] for r in rows) == ["list", "reveal"]


@pytest.fixture
def admin_headers(settings: Settings, db: psycopg.Connection) -> Iterator[dict[str, str]]:
    with bearer_for(settings, db, Role.admin) as headers:
        yield headers


@SCHEMA.parametrize()
@bounded(5)
def test_secrets_api_never_fails_on_any_input(case, admin_headers: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    case.call_and_validate(headers=admin_headers, checks=CHECKS)
