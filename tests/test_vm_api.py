"""The VM and auto-shutdown REST endpoints: bearer tokens, viewer reads, operator changes, audited."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from backend import audit
from backend.api import tokens
from backend.api_app import create_app
from backend.config import Settings
from backend.identity.principal import SYSTEM, Role
from tests.fakes.gce import FakeGce


@pytest.fixture
def api(settings: Settings, db: psycopg.Connection) -> Iterator[tuple[TestClient, dict[str, str], FakeGce]]:
    fake = FakeGce(project="stream-prod").start()
    fake.add("stream-gpu-1", "europe-west4-a", labels={"platform": "stream-platform"}, gpus=1)
    gcp = settings.model_copy(update={
        "vm_provider": "gcp", "gcp_project_id": "stream-prod", "compute_endpoint": fake.endpoint,
        "autoshutdown_host": "api-host",
    })
    headers = {
        role.value: f"Bearer {tokens.create_token(db, SYSTEM, f'vm-{role.value}', role).value}"
        for role in (Role.viewer, Role.operator)
    }
    with TestClient(create_app(gcp)) as client:
        yield client, headers, fake
    fake.stop()


def test_status_and_vms_for_viewers(api: tuple[TestClient, dict[str, str], FakeGce]) -> None:
    client, headers, _ = api
    assert client.get("/api/v1/autoshutdown/status").status_code == 401
    status = client.get("/api/v1/autoshutdown/status", headers={"Authorization": headers["viewer"]})
    assert status.status_code == 200
    assert status.json()["host"] == "api-host" and status.json()["latest"] is None
    vms = client.get("/api/v1/vms", headers={"Authorization": headers["viewer"]}).json()
    assert [(vm["name"], vm["status"], vm["gpus"]) for vm in vms] == [("stream-gpu-1", "RUNNING", ["1 × nvidia-l4"])]


def test_operators_snooze_skip_and_stop_viewers_may_not(
    api: tuple[TestClient, dict[str, str], FakeGce], db: psycopg.Connection
) -> None:
    client, headers, fake = api
    viewer, operator = {"Authorization": headers["viewer"]}, {"Authorization": headers["operator"]}
    assert client.post("/api/v1/autoshutdown/snooze", json={"minutes": 30}, headers=viewer).status_code == 403
    snoozed = client.post("/api/v1/autoshutdown/snooze", json={"minutes": 30}, headers=operator)
    assert snoozed.status_code == 200 and snoozed.json()["state"]["snoozed_until"] is not None
    assert snoozed.json()["events"][0]["kind"] == "snoozed"
    bad = client.post("/api/v1/autoshutdown/snooze", json={"minutes": 0}, headers=operator)
    assert bad.status_code == 422
    skipped = client.post("/api/v1/autoshutdown/skip", json={}, headers=operator)
    assert skipped.status_code == 200 and skipped.json()["state"]["snoozed_until"] is None

    assert client.post("/api/v1/vms/stream-gpu-1/stop", headers=viewer).status_code == 403
    stopped = client.post("/api/v1/vms/stream-gpu-1/stop", headers=operator)
    assert stopped.json() == {"name": "stream-gpu-1", "zone": "europe-west4-a", "status": "stopped"}
    assert len(fake.verb_calls("stop")) == 1
    rows = [(e.actor, e.action, e.outcome) for e in reversed(audit.entries(db, area="vm"))]
    assert rows == [
        ("token:vm-operator", "autoshutdown.snoozed", "ok"), ("token:vm-operator", "autoshutdown.skipped", "ok"),
        ("token:vm-operator", "vm.stop", "ok"),
    ]
