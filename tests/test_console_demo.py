"""The demo orchestrator: which components exist, child process groups stopped cleanly, nginx-rtmp rendered from
the streams template, backfill progress counted from stored samples, the first admin, and the demo at work: the
fleet's agents, the live publishers, seeded secrets and alerts."""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import psycopg
import pytest
from pydantic import SecretStr

from backend import demo
from backend.config import Settings
from backend.console_auth import login
from backend.costs import service as costs
from backend.demo import fleet, publishers, seed
from backend.demo.compute_api import ComputeApi
from backend.embedded.ports import free_port
from backend.health import alerts as alert_store
from backend.health import service as health
from backend.health.findings import Finding, GpuHealth
from backend.health.transitions import AlertPolicy
from backend.identity.bootstrap import ensure_admin
from backend.identity.principal import SYSTEM
from backend.identity.users import LoginFailed
from backend.secrets.service import get_service
from backend.streams import service as streams
from backend.vm import service as vm
from tests.nginx_rtmp import tools_missing as nginx_tools_missing


def test_a_missing_program_is_skipped_with_a_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stack = demo.DemoStack(tmp_path, settings=Settings())
    caplog.set_level("INFO", logger="backend.demo")
    assert stack.spawn(demo.Component("tool", argv=("no-such-binary-here",))) is None
    assert "skipping tool: no-such-binary-here is not installed" in caplog.text
    assert stack.children == []


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


def test_stop_ends_the_whole_process_group_and_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    stack = demo.DemoStack(tmp_path, settings=Settings())
    polite = stack.spawn(demo.Component("polite", argv=("sh", "-c", "sleep 300 & sleep 300")))
    stubborn = stack.spawn(demo.Component("stubborn", argv=("sh", "-c", "trap '' TERM; sleep 300 & wait")))
    assert polite is not None and stubborn is not None
    time.sleep(0.3)
    family = [p.pid for child in (polite, stubborn)
              for p in [psutil.Process(child.process.pid), *psutil.Process(child.process.pid).children()]]
    assert len(family) >= 4, "each shell has a grandchild sleeping"

    started = time.monotonic()
    stack.stop(timeout=1.0)
    assert time.monotonic() - started < 8
    deadline = time.monotonic() + 2  # killed processes may take a moment to be reaped by init
    while _alive(family) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(family) == []
    assert stack.children == []
    assert (tmp_path / "logs" / "polite.log").exists()


@pytest.mark.skipif(shutil.which("nginx") is None, reason="Debian nginx is not installed")
def test_nginx_rtmp_config_is_rendered_from_the_streams_template(tmp_path: Path) -> None:
    token = "demo-callback-token-" + "d" * 32
    settings = Settings(api_base_url="http://127.0.0.1:18080", streams_callback_token=token)
    setup = demo.prepare_nginx(tmp_path, settings)
    assert setup is not None
    config = (setup.prefix / "conf" / "nginx.conf").read_text()
    assert f"listen 127.0.0.1:{setup.rtmp_port};" in config
    assert f"on_publish http://127.0.0.1:18080/rtmp/on_publish?token={token};" in config
    assert setup.env == {"STREAMS_NGINX_STAT_URL": f"http://127.0.0.1:{setup.http_port}/stat",
                         "STREAMS_NGINX_CONTROL_URL": f"http://127.0.0.1:{setup.http_port}/control",
                         "STREAMS_HOST": "gpu-node-02"}
    stack = demo.DemoStack(tmp_path, settings=settings)
    child = stack.spawn(demo.Component("nginx-rtmp", argv=setup.argv, ready_port=setup.rtmp_port))
    try:
        assert child is not None and child.process.poll() is None
    finally:
        stack.stop()
    assert child.process.poll() is not None


def test_the_demo_runs_the_scheduled_stream_starter_as_a_child(tmp_path: Path) -> None:
    settings = Settings(health_model_dir=tmp_path)
    scheduler = [c for c in demo.components(settings, None) if c.name == "scheduler"]
    assert scheduler == [demo.Component("scheduler", cli=("vm", "start-scheduled"), args=("--every", "10s"))]


def test_backfill_progress_counts_stored_samples(settings: Settings) -> None:
    started = datetime.now(UTC)
    stored = demo.store_history(settings, hosts=1, gpus_per_host=2, history=timedelta(minutes=30),
                                interval=timedelta(minutes=1), faults=())
    assert stored == 2 * 30
    advanced: list[int] = []
    counted = demo.follow_backfill(settings, started - timedelta(minutes=31), started - timedelta(minutes=2),
                                   expected=60, advance=advanced.append, poll_s=0.05, settle_polls=2)
    assert counted == 60 and sum(advanced) == 60


def test_first_admin_from_admin_password_then_kept(settings: Settings, db: psycopg.Connection) -> None:
    configured = settings.model_copy(update={"admin_password": SecretStr("the-configured-password")})
    first = ensure_admin(configured)
    assert first.created and first.generated_password is None
    assert login("admin", "the-configured-password", configured).role == "admin"
    again = ensure_admin(configured)
    assert not again.created and again.name == "admin"


def test_first_admin_generated_when_no_password_is_configured(settings: Settings) -> None:
    first = ensure_admin(settings)
    assert first.created and first.generated_password and len(first.generated_password) >= 20
    assert login("admin", first.generated_password, settings).name == "admin"
    with pytest.raises(LoginFailed):
        login("admin", "not-the-password", settings)


def test_a_preparation_step_is_awaited_and_leaves_the_children(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    stack = demo.DemoStack(tmp_path, settings=Settings())
    caplog.set_level("INFO", logger="backend.demo")
    done = stack.spawn(demo.Component("prepare", argv=("sh", "-c", "echo ready"), run_once=True))
    failed = stack.spawn(demo.Component("broken", argv=("sh", "-c", "exit 3"), run_once=True))
    assert done is not None and done.process.returncode == 0
    assert failed is not None and failed.process.returncode == 3
    assert stack.children == []
    assert "prepare finished" in caplog.text
    assert "broken did not finish cleanly (status 3" in caplog.text
    assert (tmp_path / "logs" / "prepare.log").read_text() == "ready\n"


def _latest(db: psycopg.Connection) -> dict[str, dict]:
    rows = db.execute("""SELECT DISTINCT ON (host) host, decision, reasons, signals, stop_at FROM vm_evaluations
                         ORDER BY host, at DESC, id DESC""").fetchall()
    return {r["host"]: r for r in rows}


def _shown(db: psycopg.Connection, compute: ComputeApi) -> dict[str, bool]:
    """Which of the demo's states are on show now."""
    latest = _latest(db)

    def reasons(host: str) -> str:
        row = latest.get(host)
        return " | ".join(row["reasons"] + [str(s) for s in row["signals"]]) if row else ""

    return {
        "busy": all(latest.get(h, {}).get("decision") == "active" and "GPU busy" in reasons(h)
                    for h in ("gpu-node-00", "gpu-node-01")),
        "stream": latest.get("gpu-node-02", {}).get("decision") == "active"
        and "live/studio-a" in reasons("gpu-node-02"),
        "countdown": latest.get("gpu-node-03", {}).get("decision") == "warning"
        and latest["gpu-node-03"]["stop_at"] is not None,
        "stopped": compute.status("gpu-node-04") == "TERMINATED" and db.execute(
            "SELECT 1 FROM vm_events WHERE host = 'gpu-node-04' AND kind = 'stopped'").fetchone() is not None,
        "unknown": latest.get("gpu-node-05", {}).get("decision") == "active" and "no recent sample" in reasons(
            "gpu-node-05"),
    }


SCHEDULER_LEAD_S = 2


def _a_scheduled_stream_starts_the_stopped_vm(settings: Settings, compute: ComputeApi, db: psycopg.Connection) -> None:
    """The demo's scheduled stream on the VM auto-shutdown stopped: the VMs page lists it for that VM, the demo's
    scheduler child (2 s lead here) starts the VM through the audited VM service, and the VM's agent holds it up."""
    assert compute.status(seed.SCHEDULED_VM) == "TERMINATED"
    quick = settings.model_copy(update={"streams_schedule_lead_seconds": SCHEDULER_LEAD_S})
    scheduled = seed.seed_scheduled_stream(quick, vm_starts_in=timedelta(0))
    assert scheduled is not None and seed.seed_scheduled_stream(quick) is None
    booked = {s.vm: (s.app, s.stream, s.name) for s in streams.list_schedules(SYSTEM, settings=settings)}
    assert booked == {seed.SCHEDULED_VM: ("live", "keynote", "Launch keynote")}  # what the VMs page says
    deadline = time.monotonic() + 30
    while compute.status(seed.SCHEDULED_VM) != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert compute.status(seed.SCHEDULED_VM) == "RUNNING"
    assert streams.list_schedules(SYSTEM, settings=settings)[0].vm_started_at is not None
    assert db.execute("SELECT 1 FROM audit_log WHERE actor = 'stream-scheduler' AND action = 'vm.start' "
                      "AND target = %s AND outcome = 'ok'", (seed.SCHEDULED_VM,)).fetchone() is not None
    while time.monotonic() < deadline and "scheduled stream: 'Launch keynote'" not in str(
            _latest(db).get(seed.SCHEDULED_VM, {}).get("signals")):
        time.sleep(0.2)
    held = _latest(db)[seed.SCHEDULED_VM]
    assert "scheduled stream: 'Launch keynote'" in str(held["signals"]) and held["decision"] == "active"


@pytest.mark.skipif(bool(nginx_tools_missing()), reason="nginx-rtmp or ffmpeg is not installed")
def test_the_demo_shows_every_state_within_a_minute_and_stops_every_child(
        settings: Settings, db: psycopg.Connection, tmp_path: Path) -> None:
    """The fleet (agents through the Compute API), the publishers with refused attempts, seeded secrets and alerts:
    each state appears, a kicked publisher stays down, and stopping leaves no child (ffmpeg included)."""
    demo.store_history(settings, hosts=demo.HOSTS, gpus_per_host=demo.GPUS_PER_HOST, history=timedelta(minutes=90),
                       interval=timedelta(minutes=1), faults=("xid79:gpu-node-05/1@5m",),  # off the bus at 50 min
                       host_workloads=fleet.host_workloads())
    settings = settings.model_copy(update={"streams_callback_token": SecretStr("demo-test-token-" + "t" * 32),
                                           "stream_key_pepper": SecretStr("demo-test-pepper-" + "p" * 40),
                                           "streams_lockout_threshold": 3,
                                           "api_port": free_port()})
    settings = settings.model_copy(update={"api_base_url": f"http://127.0.0.1:{settings.api_port}"})
    nginx = demo.prepare_nginx(tmp_path, settings)
    assert nginx is not None
    settings = settings.model_copy(update={"streams_nginx_stat_url": nginx.stat_url,
                                           "streams_nginx_control_url": nginx.control_url})
    stack = demo.DemoStack(tmp_path, settings=settings)
    stack.env = {"DATABASE_URL": settings.require_database_url(), "PYTHONUNBUFFERED": "1",
                 "STREAMS_CALLBACK_TOKEN": "demo-test-token-" + "t" * 32,
                 "STREAM_KEY_PEPPER": "demo-test-pepper-" + "p" * 40, "STREAMS_LOCKOUT_THRESHOLD": "3",
                 "STREAMS_SCHEDULE_LEAD_SECONDS": str(SCHEDULER_LEAD_S), **nginx.env}
    compute = stack.serve_fleet()
    agents = None
    try:
        stack.spawn(demo.Component("api", cli=("api", "serve"), args=("--port", str(settings.api_port)),
                                   ready_port=settings.api_port))
        stack.spawn(demo.Component("nginx-rtmp", argv=nginx.argv, ready_port=nginx.rtmp_port))
        stack.spawn(demo.scheduler_component(every="1s"))
        keys = publishers.issue_keys(settings)
        spawned = {stream: stack.spawn(demo.Component(f"publisher-{stream}", argv=argv))
                   for stream, argv in publishers.publisher_argvs(nginx.rtmp_port, keys).items()}
        assert publishers.wait_live(settings, set(keys)) == set(keys)
        assert publishers.refused_attempts(nginx.rtmp_port, settings) == 4
        agents = fleet.Fleet(settings, compute, nginx.stat_url, publishers.stream_hosts(), poll_s=1.0, idle_s=3.0,
                             warn_s=4.0).start()
        stack._stops.append(agents.stop)
        assert seed.seed_secrets(settings) == 3 and seed.seed_secrets(settings) == 0
        assert seed.seed_alert_history(settings) == 2 and seed.seed_alert_history(settings) == 0

        deadline, shown = time.monotonic() + 60, _shown(db, compute)
        while time.monotonic() < deadline and not all(shown.values()):
            time.sleep(1)
            shown = _shown(db, compute)
        assert all(shown.values()), shown

        live = streams.live_streams(SYSTEM, settings=settings)
        assert {s.stream for s in live} == {"studio-a", "studio-b", "lobby-cam"}
        attempts = streams.list_attempts(SYSTEM, settings=settings)
        assert any(a.outcome == "deny" and a.stream == "studio-a" for a in attempts)
        assert any(f.locked_until is not None for f in streams.list_failures(SYSTEM, locked_only=True,
                                                                            settings=settings))
        time.sleep(1)  # stopped time to count
        ledger = costs.savings_ledger(SYSTEM, datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC),
                                      settings=settings)
        assert [h.key for h in ledger.by_host] == ["gpu-node-04"] and ledger.saved_gpu_hours > 0

        _a_scheduled_stream_starts_the_stopped_vm(settings, compute, db)
        assert [s.secret for s in get_service(settings).rotation_due(SYSTEM)] == ["payments-api-key"]
        assert len(health.list_alerts(SYSTEM, states=("resolved",), settings=settings)) == 2
        gpu = db.execute("SELECT gpu_uuid, host, gpu_index, model FROM gpus WHERE host = 'gpu-node-00'").fetchone()
        burning = Finding("gpu_temperature", "warning", "GPU temperature high", {}, datetime.now(UTC), "Check cooling")
        alert_store.reconcile(db, [GpuHealth(gpu["gpu_uuid"], gpu["host"], gpu["gpu_index"], gpu["model"], "warning",
                                             [burning])], datetime.now(UTC), AlertPolicy())
        acknowledged = seed.acknowledge_one(settings, timeout_s=5)
        assert acknowledged is not None and seed.acknowledge_one(settings, timeout_s=1) is None
        assert health.list_alerts(SYSTEM, states=("acknowledged",), settings=settings)[0].id == acknowledged

        snoozed = vm.snooze(SYSTEM, 600, "gpu-node-03", settings=settings)
        assert snoozed.snoozed_until is not None
        vm.skip(SYSTEM, "gpu-node-03", settings=settings)

        assert streams.kick(SYSTEM, "studio-b", settings=settings) == 1
        kicked = spawned["studio-b"]
        assert kicked is not None and kicked.process.wait(15) is not None
        time.sleep(2)
        assert "studio-b" not in {s.stream for s in streams.live_streams(SYSTEM, settings=settings)}
        assert [c.component.name for c in stack.children if c.process.poll() is None].count("publisher-studio-b") == 0

        key = next(k for k in streams.list_keys(SYSTEM, settings=settings) if k.stream == "studio-a")
        assert streams.revoke_key(SYSTEM, key.id, settings=settings).kicked == ["live/studio-a"]
        assert spawned["studio-a"] is not None and spawned["studio-a"].process.wait(15) is not None

        running = [psutil.Process(c.process.pid) for c in stack.children if c.process.poll() is None]
        family = [p.pid for leader in running for p in [leader, *leader.children(recursive=True)]]
        ffmpeg = [pid for pid in family if psutil.Process(pid).name() == "ffmpeg"]
        assert len(ffmpeg) == 1, "kicked and revoked publishers are not started again"
    finally:
        stack.stop()
    deadline = time.monotonic() + 5
    while _alive(family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _alive(family) == []
    assert agents is not None and all(not t.is_alive() for t in agents._threads)
