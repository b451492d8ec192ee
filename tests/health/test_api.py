"""`/api/v1/alerts` on a real database: bearer tokens, roles, filters, errors that name the field."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from backend import audit
from backend.api import tokens
from backend.api_app import create_app
from backend.health.alerts import AlertPolicy, reconcile
from backend.health.findings import Finding, GpuHealth
from backend.identity.principal import SYSTEM, Role

from .crafted import NOW


@pytest.fixture
def api(settings, db):
    hot = Finding("gpu_temperature", "warning", "GPU temperature high", {"gpu_temp": 88.0}, NOW, "check cooling")
    dbe = Finding("ecc_dbe_volatile", "critical", "DBE", {"ecc_dbe_vol_total": 1}, NOW, "reset")
    reconcile(db, [GpuHealth("GPU-1", "node-a", 0, "H100", "critical", [hot, dbe]),
                   GpuHealth("GPU-2", "node-b", 1, "H100", "warning", [hot])], NOW, AlertPolicy())
    issued = {role: tokens.create_token(db, SYSTEM, role.value, role).value for role in Role}
    with TestClient(create_app(settings)) as client:
        client.tokens = issued  # type: ignore[attr-defined]
        yield client


def _auth(client, role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.tokens[role]}"}


def test_list_and_filter(api):
    assert api.get("/api/v1/alerts").status_code == 401
    everything = api.get("/api/v1/alerts", headers=_auth(api, Role.viewer))
    assert everything.status_code == 200
    body = everything.json()
    assert [a["severity"] for a in body] == ["critical", "warning", "warning"]
    assert body[0]["evidence"] == {"ecc_dbe_vol_total": 1}
    only = api.get("/api/v1/alerts", params={"host": "node-b", "state": ["open"]}, headers=_auth(api, Role.viewer))
    assert [(a["gpu_uuid"], a["rule"]) for a in only.json()] == [("GPU-2", "gpu_temperature")]
    assert api.get("/api/v1/alerts", params={"state": "resolved"}, headers=_auth(api, Role.viewer)).json() == []


def test_bad_parameters_name_the_field(api):
    bad = api.get("/api/v1/alerts", params={"state": "closed"}, headers=_auth(api, Role.viewer))
    assert bad.status_code == 422 and bad.json()["field"] == "state.0"
    bad = api.get("/api/v1/alerts", params={"limit": 0}, headers=_auth(api, Role.viewer))
    assert bad.status_code == 422 and bad.json()["field"] == "limit"


def test_ack_needs_operator_and_is_audited(api, db):
    alert_id = api.get("/api/v1/alerts", headers=_auth(api, Role.viewer)).json()[0]["id"]
    assert api.post(f"/api/v1/alerts/{alert_id}/ack", headers=_auth(api, Role.viewer)).status_code == 403
    done = api.post(f"/api/v1/alerts/{alert_id}/ack", json={"note": "swapping it"}, headers=_auth(api, Role.operator))
    assert done.status_code == 200, done.text
    assert (done.json()["state"], done.json()["acknowledged_by"], done.json()["ack_note"]) == (
        "acknowledged", "token:operator", "swapping it")
    assert [(e.actor, e.outcome) for e in audit.entries(db, area="health")] == [("token:operator", "ok")]
    # without a body too; unknown ids are 404
    other = api.get("/api/v1/alerts", params={"state": "open"}, headers=_auth(api, Role.viewer)).json()[0]["id"]
    assert api.post(f"/api/v1/alerts/{other}/ack", headers=_auth(api, Role.admin)).status_code == 200
    missing = api.post("/api/v1/alerts/999999/ack", headers=_auth(api, Role.operator))
    assert missing.status_code == 404 and "no alert" in missing.json()["error"]


def test_alert_timeline(api):
    alert_id = api.get("/api/v1/alerts", headers=_auth(api, Role.viewer)).json()[0]["id"]
    api.post(f"/api/v1/alerts/{alert_id}/ack", headers=_auth(api, Role.operator))
    events = api.get(f"/api/v1/alerts/{alert_id}/events", headers=_auth(api, Role.viewer)).json()
    assert [(e["kind"], e["actor"], e["alert"]["state"]) for e in events] == [
        ("opened", "system", "open"), ("acknowledged", "token:operator", "acknowledged")]
    assert api.get("/api/v1/alerts/424242/events", headers=_auth(api, Role.viewer)).status_code == 404
