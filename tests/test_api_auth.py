"""Bearer API tokens: issued once, stored hashed, checked on every /api/v1 request, revocable."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from backend.api import tokens
from backend.api_app import create_app
from backend.audit import entries
from backend.cli import app as cli
from backend.errors import InvalidInput, NotFound
from backend.identity.principal import SYSTEM, PermissionDenied, Principal, Role


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


def _auth(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_token_is_stored_only_as_a_hash_and_authenticates(db):
    issued = tokens.create_token(db, SYSTEM, "grafana", Role.viewer)
    assert issued.value.startswith("spt_") and issued.value not in repr(issued)
    row = db.execute("SELECT * FROM api_tokens WHERE name = 'grafana'").fetchone()
    secret = issued.value.split("_", 2)[2]
    assert bytes(row["secret_hash"]) == hashlib.sha256(secret.encode()).digest()
    assert secret not in json.dumps({k: str(v) for k, v in row.items()})
    assert tokens.authenticate(db, issued.value) == Principal("token:grafana", Role.viewer)
    assert tokens.authenticate(db, issued.value[:-1] + ("A" if issued.value[-1] != "A" else "B")) is None
    assert tokens.authenticate(db, "spt_000000000000_" + "x" * 43) is None
    assert tokens.authenticate(db, "not a token") is None
    assert tokens.authenticate(db, issued.value + "\n") is None
    audit_text = json.dumps([e.detail for e in entries(db, area="api")])
    assert secret not in audit_text and "grafana" in [e.target for e in entries(db, area="api")]


def test_only_admins_manage_tokens_and_names_are_unique_while_live(db):
    with pytest.raises(PermissionDenied):
        tokens.create_token(db, Principal("op", Role.operator), "x", Role.viewer)
    with pytest.raises(PermissionDenied):
        tokens.list_tokens(db, Principal("v", Role.viewer))
    tokens.create_token(db, SYSTEM, "ci", Role.operator)
    with pytest.raises(InvalidInput, match="already exists"):
        tokens.create_token(db, SYSTEM, "ci", Role.viewer)
    for bad_name in ("Bad Name", "ci-2\n", "ci\n"):
        with pytest.raises(InvalidInput, match="invalid token name"):
            tokens.create_token(db, SYSTEM, bad_name, Role.viewer)
    tokens.revoke_token(db, SYSTEM, "ci")
    with pytest.raises(NotFound):
        tokens.revoke_token(db, SYSTEM, "ci")
    again = tokens.create_token(db, SYSTEM, "ci", Role.viewer)
    assert [t.name for t in tokens.list_tokens(db, SYSTEM)] == ["ci"]
    assert len(tokens.list_tokens(db, SYSTEM, include_revoked=True)) == 2
    assert tokens.authenticate(db, again.value).role is Role.viewer


def test_expired_and_revoked_tokens_stop_working(db):
    issued = tokens.create_token(db, SYSTEM, "short", Role.viewer, expires_in_days=1)
    assert tokens.authenticate(db, issued.value) is not None
    assert tokens.authenticate(db, issued.value, now=datetime.now(UTC) + timedelta(days=2)) is None
    tokens.revoke_token(db, SYSTEM, "short")
    assert tokens.authenticate(db, issued.value) is None


def test_last_used_is_recorded(db):
    issued = tokens.create_token(db, SYSTEM, "bot", Role.viewer)
    assert tokens.list_tokens(db, SYSTEM)[0].last_used_at is None
    tokens.authenticate(db, issued.value)
    assert tokens.list_tokens(db, SYSTEM)[0].last_used_at is not None


def test_api_requires_a_valid_bearer_token(client, db):
    missing = client.get("/api/v1/metrics")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "bearer token" in missing.json()["error"]
    assert client.get("/api/v1/metrics", headers=_auth("spt_nope")).status_code == 401
    assert client.get("/api/v1/metrics", headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 401
    issued = tokens.create_token(db, SYSTEM, "reader", Role.viewer)
    ok = client.get("/api/v1/metrics", headers=_auth(issued.value))
    assert ok.status_code == 200
    assert {"name": "gpu_temp", "unit": "°C"}.items() <= ok.json()[0].items()
    tokens.revoke_token(db, SYSTEM, "reader")
    assert client.get("/api/v1/metrics", headers=_auth(issued.value)).status_code == 401


def test_prometheus_metrics_count_requests_by_route(client, db):
    issued = tokens.create_token(db, SYSTEM, "scraper", Role.viewer)
    client.get("/api/v1/metrics", headers=_auth(issued.value))
    client.get("/api/v1/gpus/GPU-0123abcd")
    client.get("/no/such/page")
    body = client.get("/metrics", headers=_auth(issued.value)).text
    assert 'api_requests_total{method="GET",route="/api/v1/metrics",status="200"}' in body
    assert 'api_requests_total{method="GET",route="/api/v1/gpus/{gpu_uuid}",status="401"}' in body
    assert 'api_requests_total{method="GET",route="unmatched",status="404"}' in body
    assert 'api_request_duration_seconds_count{route="/api/v1/metrics"}' in body
    assert "GPU-0123abcd" not in body and "/no/such/page" not in body


def test_tokens_cli_create_list_revoke(settings, db):
    runner = CliRunner()
    created = runner.invoke(cli, ["api", "tokens", "create", "--role", "operator", "--name", "deployer"])
    assert created.exit_code == 0, created.output
    value = created.output.strip().splitlines()[-1]
    assert tokens.authenticate(db, value) == Principal("token:deployer", Role.operator)
    listed = runner.invoke(cli, ["api", "tokens", "list", "--json"])
    assert listed.exit_code == 0 and value not in listed.output
    assert json.loads(listed.output)[0]["name"] == "deployer"
    bad = runner.invoke(cli, ["api", "tokens", "create", "--role", "root", "--name", "x"])
    assert bad.exit_code == 2 and "unknown role 'root'" in bad.output
    revoked = runner.invoke(cli, ["api", "tokens", "revoke", "deployer"])
    assert revoked.exit_code == 0, revoked.output
    assert tokens.authenticate(db, value) is None
