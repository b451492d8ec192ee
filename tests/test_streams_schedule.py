"""Scheduled streams: the schedule itself (roles, audit, overlaps), the callbacks' window check, the VM started
ahead through the VM service, the auto-shutdown signal, the REST API and the CLI; real PostgreSQL throughout."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner

from backend import audit
from backend.api import tokens
from backend.api_app import create_app
from backend.cli import app
from backend.config import Settings, get_settings
from backend.errors import Conflict, InvalidInput, NotFound
from backend.identity.principal import SYSTEM, PermissionDenied, Principal, Role
from backend.streams import schedules, service
from backend.streams.callbacks import CallbackGate, CallbackRequest
from backend.vm import service as vm_service
from backend.vm.signals.schedule import ScheduleSignal
from tests.fakes.gce import FakeGce

PEPPER = "schedule-test-pepper-" + "s" * 32
OPERATOR = Principal("olga", Role.operator)
VIEWER = Principal("vic", Role.viewer)
HOUR = timedelta(hours=1)
LOCAL_ERROR = "the local provider describes this host only: set VM_PROVIDER=gcp to start VMs"
CLOUD_ERROR = "no instance named stream-gpu-9 in project stream-prod"


@pytest.fixture
def streams_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"stream_key_pepper": SecretStr(PEPPER), "streams_callback_token":
                                       SecretStr("schedule-callback-token-" + "t" * 32)})


def _window(starts_in: timedelta, lasts: timedelta = HOUR) -> tuple[datetime, datetime]:
    start = datetime.now(UTC) + starts_in
    return start, start + lasts


def test_schedules_are_operator_only_audited_and_never_overlap_for_one_key(streams_settings: Settings,
                                                                           db: psycopg.Connection) -> None:
    key = service.create_key(OPERATOR, "keynote", settings=streams_settings).key
    start, end = _window(HOUR)
    made = service.schedule_stream(OPERATOR, "Friday keynote", key.id, "stream-gpu-1", start, end,
                                   grace=timedelta(minutes=5), settings=streams_settings)
    assert (made.stream, made.vm, made.state(), made.grace) == ("keynote", "stream-gpu-1", "upcoming",
                                                                timedelta(minutes=5))
    with pytest.raises(Conflict, match=f"already scheduled then: schedule {made.id}"):
        service.schedule_stream(OPERATOR, "clash", key.id, "stream-gpu-1", end + timedelta(minutes=9), end + HOUR,
                                grace=timedelta(minutes=5), settings=streams_settings)
    with pytest.raises(PermissionDenied):
        service.schedule_stream(VIEWER, "nope", key.id, "stream-gpu-1", start, end, settings=streams_settings)
    with pytest.raises(InvalidInput, match="end after it starts"):
        service.schedule_stream(OPERATOR, "backwards", key.id, "vm", end, start, settings=streams_settings)
    with pytest.raises(NotFound, match="no stream key nope"):
        service.schedule_stream(OPERATOR, "ghost key", "nope", "vm", start, end, settings=streams_settings)
    assert [s.id for s in service.list_schedules(VIEWER, settings=streams_settings)] == [made.id]

    assert service.cancel_schedule(OPERATOR, made.id, settings=streams_settings).state() == "cancelled"
    with pytest.raises(Conflict, match="already cancelled"):
        service.cancel_schedule(OPERATOR, made.id, settings=streams_settings)
    assert service.list_schedules(VIEWER, settings=streams_settings) == []
    assert [s.id for s in service.list_schedules(VIEWER, include_past=True, settings=streams_settings)] == [made.id]
    rows = [(e.actor, e.action, e.outcome) for e in reversed(audit.entries(db, area="streams"))]
    assert ("olga", "schedule.create", "ok") in rows and ("olga", "schedule.cancel", "ok") in rows


def test_the_callbacks_refuse_a_scheduled_key_outside_its_window_plus_grace(streams_settings: Settings) -> None:
    free = service.create_key(OPERATOR, "free", settings=streams_settings)
    later = service.create_key(OPERATOR, "later", settings=streams_settings)
    now_on = service.create_key(OPERATOR, "now-on", settings=streams_settings)
    service.schedule_stream(OPERATOR, "tonight", later.key.id, "vm", *_window(HOUR), settings=streams_settings)
    start, end = _window(timedelta(minutes=2), timedelta(minutes=10))  # opens within its 5-minute grace
    service.schedule_stream(OPERATOR, "now", now_on.key.id, "vm", start, end, grace=timedelta(minutes=5),
                            settings=streams_settings)

    async def publish(issued, stream: str) -> tuple[str, str]:
        gate = CallbackGate(streams_settings)
        try:
            form = {"call": "publish", "app": "live", "name": stream, "addr": "198.51.100.7", "clientid": "1",
                    "key": issued.secret}
            decision = await gate.publish(CallbackRequest.from_form(form))
            return decision.outcome, decision.reason
        finally:
            await gate.close()

    assert asyncio.run(publish(free, "free")) == ("allow", "ok")
    assert asyncio.run(publish(later, "later")) == ("deny", "outside schedule")
    assert asyncio.run(publish(now_on, "now-on")) == ("allow", "ok")


@pytest.fixture
def gce(streams_settings: Settings) -> Iterator[tuple[FakeGce, Settings]]:
    fake = FakeGce(project="stream-prod").start()
    fake.add("stream-gpu-2", "us-central1-b", labels={"platform": "stream-platform"}, status="TERMINATED")
    yield fake, streams_settings.model_copy(update={
        "vm_provider": "gcp", "gcp_project_id": "stream-prod", "compute_endpoint": fake.endpoint,
        "streams_schedule_lead_seconds": 600})
    fake.stop()


def test_the_vm_is_started_once_a_lead_time_ahead_through_the_audited_vm_service(
        gce: tuple[FakeGce, Settings], db: psycopg.Connection) -> None:
    fake, settings = gce
    key = service.create_key(OPERATOR, "cam", settings=settings).key
    soon = service.schedule_stream(OPERATOR, "soon", key.id, "stream-gpu-2", *_window(timedelta(minutes=8)),
                                   settings=settings)
    service.schedule_stream(OPERATOR, "later", key.id, "stream-gpu-2", *_window(3 * HOUR), settings=settings)
    other = service.create_key(OPERATOR, "cam2", settings=settings).key
    ghost = service.schedule_stream(OPERATOR, "ghost", other.id, "no-such-vm", *_window(timedelta(minutes=1)),
                                    settings=settings)

    now = datetime.now(UTC)
    started = vm_service.start_scheduled_vms(settings, now=now)
    assert [(s.schedule_id, s.error is None) for s in started] == [(ghost.id, False), (soon.id, True)]
    assert fake.instances["stream-gpu-2"]["status"] == "RUNNING"
    assert vm_service.start_scheduled_vms(settings, now=now + timedelta(seconds=29)) == []  # backing off
    later = now + timedelta(seconds=30)
    assert vm_service.start_scheduled_vms(settings, now=later) == [vm_service.ScheduledStart(
        ghost.id, "ghost", "no-such-vm", ghost.starts_at, started[0].error, later + timedelta(minutes=1))]
    assert fake.verb_calls("start") == [
        "/compute/v1/projects/stream-prod/zones/us-central1-b/instances/stream-gpu-2/start"]
    after = {s.id: s for s in service.list_schedules(VIEWER, settings=settings)}
    assert after[soon.id].vm_started_at is not None and "no-such-vm" in (after[ghost.id].vm_start_error or "")
    rows = [(e.actor, e.action, e.target, e.outcome) for e in reversed(audit.entries(db, area="vm"))]
    assert ("stream-scheduler", "vm.start", "stream-gpu-2", "ok") in rows


def test_a_start_that_keeps_failing_backs_off_and_is_audited_once_per_error_until_it_recovers(
        gce: tuple[FakeGce, Settings], db: psycopg.Connection, caplog: pytest.LogCaptureFixture) -> None:
    """With the local provider (which cannot start VMs), then a VM that does not exist, then one that does."""
    fake, cloud = gce
    local = cloud.model_copy(update={"vm_provider": "local"})
    key = service.create_key(OPERATOR, "late-cam", settings=cloud).key
    show = service.schedule_stream(OPERATOR, "late show", key.id, "stream-gpu-9", *_window(timedelta(minutes=5)),
                                   settings=cloud)
    t0 = datetime.now(UTC)

    def attempt(settings: Settings, after: timedelta) -> list[tuple[str | None, timedelta | None]]:
        return [(s.error, s.retry_at and s.retry_at - t0)
                for s in vm_service.start_scheduled_vms(settings, now=t0 + after)]

    caplog.set_level("INFO", logger="backend.vm.service")
    seconds = [0, 30, 90, 210, 450, 750]  # each try when the last one's back-off ends: 30 s, 1, 2, 4, then 5 min
    for tried, waited in zip(seconds, [*seconds[1:], 1050], strict=True):
        assert attempt(local, timedelta(seconds=tried)) == [(LOCAL_ERROR, timedelta(seconds=waited))]
        assert attempt(local, timedelta(seconds=waited - 1)) == []
    assert attempt(cloud, timedelta(seconds=1050)) == [(CLOUD_ERROR, timedelta(seconds=1350))]  # another error
    fake.add("stream-gpu-9", "us-central1-b", labels={"platform": "stream-platform"}, status="TERMINATED")
    assert attempt(cloud, timedelta(seconds=1350)) == [(None, None)]
    assert fake.instances["stream-gpu-9"]["status"] == "RUNNING"
    assert attempt(cloud, timedelta(seconds=1400)) == []  # started: done

    rows = [(e.actor, e.action, e.target, e.outcome, e.detail) for e in reversed(audit.entries(db, area="vm"))]
    failures = [r for r in rows if r[3] == "error"]
    assert [d["error"] for *_, d in failures] == [LOCAL_ERROR, CLOUD_ERROR]
    assert rows[-1][:4] == ("stream-scheduler", "vm.start", "stream-gpu-9", "ok")
    assert rows[-1][4]["failed_tries_before"] == 7 and rows[-1][4]["schedule"] == show.id
    assert caplog.text.count("did not start") == 2 and "started after 7 failed tries" in caplog.text
    stored = next(s for s in service.list_schedules(VIEWER, settings=cloud) if s.id == show.id)
    assert (stored.vm_started_at, stored.vm_start_error, stored.vm_start_failures, stored.vm_start_retry_at) == (
        t0 + timedelta(seconds=1350), None, 7, None)


def test_the_schedule_signal_holds_the_vm_from_the_lead_time_to_the_end_of_grace(streams_settings: Settings) -> None:
    key = service.create_key(OPERATOR, "signal", settings=streams_settings).key
    start, end = datetime(2026, 12, 4, 18, tzinfo=UTC), datetime(2026, 12, 4, 19, tzinfo=UTC)
    with psycopg.connect(streams_settings.require_database_url(), autocommit=True) as conn:
        conn.row_factory = psycopg.rows.dict_row
        schedules.create(conn, SYSTEM, "show", key.id, "vm-7", start, end, grace=timedelta(minutes=5))
    url, lead = streams_settings.database_url, timedelta(minutes=10)

    def state(at: datetime, host: str = "vm-7") -> str:
        return ScheduleSignal(host, url, lead, clock=lambda: at).sample().state

    assert state(start - timedelta(minutes=16)) == "idle"
    assert state(start - timedelta(minutes=15)) == "active"  # lead + grace before the start
    reading = ScheduleSignal("vm-7", url, lead, clock=lambda: start).sample()
    assert reading.evidence == "scheduled stream: 'show' (live/signal) 18:00-19:00 UTC"
    assert state(end + timedelta(minutes=5)) == "active" and state(end + timedelta(minutes=6)) == "idle"
    assert state(start, host="vm-8") == "idle"
    assert ScheduleSignal("vm-7", None, lead).sample().state == "n/a"
    assert ScheduleSignal("vm-7", "postgresql://127.0.0.1:1/none", lead).sample().state == "unknown"


def test_rest_api_for_schedules(streams_settings: Settings, db: psycopg.Connection) -> None:
    key = service.create_key(OPERATOR, "api-cam", settings=streams_settings).key
    viewer, operator = (f"Bearer {tokens.create_token(db, SYSTEM, f'sched-{r.value}', r).value}"
                        for r in (Role.viewer, Role.operator))
    body = {"name": "API show", "key_id": key.id, "vm": "stream-gpu-1", "starts_at": "+1h", "ends_at": "+2h",
            "grace": "5m"}
    with TestClient(create_app(streams_settings)) as client:
        assert client.post("/api/v1/streams/schedules", json=body, headers={"Authorization": viewer}).status_code == 403
        made = client.post("/api/v1/streams/schedules", json=body, headers={"Authorization": operator})
        assert made.status_code == 201, made.text
        assert made.json()["grace_seconds"] == 300 and made.json()["state"] == "upcoming"
        listed = client.get("/api/v1/streams/schedules", headers={"Authorization": viewer}).json()
        assert [s["name"] for s in listed] == ["API show"]
        bad = client.post("/api/v1/streams/schedules", json=body | {"starts_at": "soon"},
                          headers={"Authorization": operator})
        assert bad.status_code == 400 and "invalid time 'soon'" in bad.text
        gone = client.delete(f"/api/v1/streams/schedules/{made.json()['id']}", headers={"Authorization": operator})
        assert gone.status_code == 200 and gone.json()["state"] == "cancelled"


def test_cli_schedule_add_list_cancel_and_start_scheduled(streams_settings: Settings,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_KEY_PEPPER", PEPPER)
    get_settings.cache_clear()
    key = service.create_key(OPERATOR, "cli-cam", settings=get_settings()).key
    runner = CliRunner()
    added = runner.invoke(app, ["streams", "schedule", "add", "CLI show", "--key", key.id, "--vm", "this-host",
                                "--start", "+5m", "--duration", "30m", "--grace", "1m", "--json"])
    assert added.exit_code == 0, added.output
    made = json.loads(added.output)
    listed = runner.invoke(app, ["streams", "schedule", "list", "--json"])
    assert [(s["id"], s["state"]) for s in json.loads(listed.output)] == [(made["id"], "upcoming")]
    started = runner.invoke(app, ["vm", "start-scheduled", "--json"])  # local provider: recorded as not started
    assert started.exit_code == 0, started.output
    assert "set VM_PROVIDER=gcp" in json.loads(started.output)[0]["error"]
    both = runner.invoke(app, ["streams", "schedule", "add", "x", "--key", key.id, "--vm", "v", "--start", "+1h"])
    assert both.exit_code == 2 and "exactly one of --end and --duration" in both.output
    assert runner.invoke(app, ["streams", "schedule", "cancel", str(made["id"])]).exit_code == 0
    get_settings.cache_clear()
