"""VM status through the real google-cloud-compute client against a loopback Compute REST fake; audit and roles."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

from backend import audit
from backend.config import Settings
from backend.errors import InvalidInput, NotFound
from backend.identity.principal import PermissionDenied, Principal, Role
from backend.vm import service
from backend.vm.compute import LocalHost
from backend.vm.policy import Countdown, Decision
from backend.vm.signals import Reading
from backend.vm.state import DbStore, Evaluation
from tests.fakes.gce import FakeGce

OPERATOR = Principal("olga", Role.operator)
VIEWER = Principal("vic", Role.viewer)


@pytest.fixture
def gce(settings: Settings) -> Iterator[tuple[FakeGce, Settings]]:
    fake = FakeGce(project="stream-prod").start()
    fake.add("stream-gpu-1", "europe-west4-a", labels={"platform": "stream-platform", "role": "ingest"}, gpus=2)
    fake.add("stream-gpu-2", "us-central1-b", labels={"platform": "stream-platform"}, status="TERMINATED")
    fake.add("unrelated", "europe-west4-a", labels={"team": "other"})
    gcp = settings.model_copy(update={
        "vm_provider": "gcp", "gcp_project_id": "stream-prod", "compute_endpoint": fake.endpoint,
    })
    yield fake, gcp
    fake.stop()


def test_list_shows_the_platform_instances_with_gpus_and_autoshutdown_state(gce: tuple[FakeGce, Settings]) -> None:
    fake, settings = gce
    at = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    reading = Reading("rtmp", "active", "1 live RTMP publisher(s): live/cam1 (30 s)")
    decision = Decision(at, "active", (f"rtmp active: {reading.evidence}",), Countdown(), (reading,))
    DbStore(settings.require_database_url()).record(Evaluation.of("stream-gpu-1", decision))

    vms = service.list_vms(VIEWER, settings=settings)
    assert [vm.name for vm in vms] == ["stream-gpu-1", "stream-gpu-2"]
    first, second = vms
    assert (first.zone, first.status, first.machine_type, first.gpus) == (
        "europe-west4-a", "RUNNING", "g2-standard-8", ["2 × nvidia-l4"])
    assert first.labels == {"platform": "stream-platform", "role": "ingest"}
    assert first.last_start == datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
    assert first.autoshutdown == "active: rtmp active: 1 live RTMP publisher(s): live/cam1 (30 s)"
    assert (second.status, second.autoshutdown) == ("TERMINATED", None)
    assert any("filter=labels.platform" in path for _, path in fake.calls)


def test_start_and_stop_are_operator_only_and_audited(gce: tuple[FakeGce, Settings], db: psycopg.Connection) -> None:
    fake, settings = gce
    assert service.start_vm(OPERATOR, "stream-gpu-2", settings=settings) == "us-central1-b"
    assert fake.instances["stream-gpu-2"]["status"] == "RUNNING"
    assert service.stop_vm(OPERATOR, "stream-gpu-1", "europe-west4-a", settings=settings) == "europe-west4-a"
    assert fake.verb_calls("stop") == [
        "/compute/v1/projects/stream-prod/zones/europe-west4-a/instances/stream-gpu-1/stop"
    ]
    with pytest.raises(PermissionDenied, match="needs role operator"):
        service.stop_vm(VIEWER, "stream-gpu-2", settings=settings)
    assert fake.instances["stream-gpu-2"]["status"] == "RUNNING"
    with pytest.raises(NotFound, match="no instance named ghost"):
        service.stop_vm(OPERATOR, "ghost", settings=settings)

    rows = [(e.actor, e.action, e.target, e.outcome) for e in reversed(audit.entries(db, area="vm"))]
    assert rows == [
        ("olga", "vm.start", "stream-gpu-2", "ok"),
        ("olga", "vm.stop", "stream-gpu-1", "ok"),
        ("vic", "vm.stop", "stream-gpu-2", "denied"),
        ("olga", "vm.stop", "ghost", "error"),
    ]


def test_local_provider_describes_this_host_and_refuses_start_stop(settings: Settings) -> None:
    (me,) = LocalHost().list()
    assert me.status == "RUNNING" and me.zone == "local" and "vCPU" in me.machine_type
    assert me.last_start is not None and me.last_start < datetime.now(UTC)
    assert 0 <= float(me.details["memory_percent"]) <= 100
    with pytest.raises(InvalidInput, match="VM_PROVIDER=gcp"):
        service.stop_vm(OPERATOR, me.name, settings=settings)
    with pytest.raises(InvalidInput, match="needs GCP_PROJECT_ID"):
        service.list_vms(VIEWER, settings=settings.model_copy(update={"vm_provider": "gcp", "gcp_project_id": None}))


def test_start_and_stop_by_name_refuse_a_vm_without_the_platform_label(gce: tuple[FakeGce, Settings],
                                                                       db: psycopg.Connection) -> None:
    fake, settings = gce
    with pytest.raises(NotFound, match="unrelated in stream-prod/europe-west4-a is not a platform VM"):
        service.stop_vm(OPERATOR, "unrelated", "europe-west4-a", settings=settings)
    zoned = settings.model_copy(update={"gcp_zone": "europe-west4-a"})
    with pytest.raises(NotFound, match="no label platform=stream-platform"):
        service.start_vm(OPERATOR, "unrelated", settings=zoned)
    assert fake.verb_calls("stop") == [] and fake.verb_calls("start") == []
    assert fake.instances["unrelated"]["status"] == "RUNNING"
    assert service.stop_vm(OPERATOR, "stream-gpu-1", settings=zoned) == "europe-west4-a"

