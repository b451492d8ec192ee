"""The agent end to end with a fake clock: persisted countdowns (database and file), hooks, actions, records."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from backend.config import Settings
from backend.costs import service as costs
from backend.costs.catalog import set_price
from backend.identity.principal import SYSTEM, Principal, Role
from backend.vm.actions import Command, DryRun, GcpStop, run_hooks
from backend.vm.agent import Agent
from backend.vm.policy import Policy
from backend.vm.signals import Reading
from backend.vm.signals.custom import CommandProbe
from backend.vm.state import DbStore, FileStore, Store
from tests.fakes.gce import FakeGce

BOOT = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
POLICY = Policy(idle_seconds=300, warn_seconds=60, min_uptime_seconds=0, poll_seconds=10)


class FixedSignal:
    """A signal whose state the test sets (the real signals are tested against real sources elsewhere)."""

    def __init__(self, state: str = "idle", name: str = "cpu") -> None:
        self.name, self.state = name, state

    def sample(self) -> Reading:
        return Reading(self.name, self.state, f"{self.name} is {self.state}")  # type: ignore[arg-type]


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 10) -> None:
        self.now += timedelta(seconds=seconds)


def make_agent(store: Store, clock: FakeClock, signal: FixedSignal | None = None, **kwargs: object) -> Agent:
    return Agent(
        host=str(kwargs.pop("host", "vm-1")), policy=kwargs.pop("policy", POLICY),  # type: ignore[arg-type]
        signals=[signal or FixedSignal()], store=store, action=kwargs.pop("action", DryRun()),  # type: ignore[arg-type]
        clock=clock, booted_at=lambda: kwargs.get("boot", BOOT),  # type: ignore[arg-type,return-value]
        hooks=kwargs.pop("hooks", []), hook_timeout=kwargs.pop("hook_timeout", 5.0),  # type: ignore[arg-type]
    )


def run_until(agent: Agent, clock: FakeClock, kind: str, limit: int = 200):  # type: ignore[no-untyped-def]
    for _ in range(limit):
        outcome = agent.evaluate()
        if outcome.decision.kind == kind:
            return outcome
        clock.tick()
    raise AssertionError(f"never reached {kind}")


@pytest.fixture(params=["database", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "file":
        yield FileStore(tmp_path / "state.json")
    else:
        yield DbStore(request.getfixturevalue("settings").require_database_url())


def test_countdown_survives_an_agent_restart_and_warns_again(store: Store) -> None:
    clock = FakeClock(BOOT + timedelta(hours=1))
    agent = make_agent(store, clock)
    first = agent.evaluate()
    clock.tick()
    warning = run_until(agent, clock, "warning")
    clock.tick(15)  # the agent restarts quickly: a fresh process, same store
    restarted = make_agent(store, clock)
    resumed = restarted.evaluate()
    assert resumed.decision.idle_since == first.decision.idle_since  # the idle clock is kept ...
    warn = timedelta(seconds=restarted.policy.warn_seconds)
    assert resumed.decision.stop_at == max(warning.decision.stop_at, clock.now + warn)  # ... never shortened
    assert resumed.decision.state.warned_at == clock.now
    assert "warning again" in " ".join(resumed.decision.reasons)
    assert store.load("vm-1").stop_at == resumed.decision.stop_at
    clock.tick()
    assert restarted.evaluate().decision.events == ()  # warned once per process, not every poll
    events = [e.kind for e in store.events("vm-1")]
    assert events == ["warning_issued", "warning_issued"]
    evaluations = store.evaluations("vm-1", limit=500)
    assert evaluations[0].decision == resumed.decision.kind and len(evaluations) >= 25
    assert evaluations[0].signals == [{"signal": "cpu", "state": "idle", "evidence": "cpu is idle", "values": {}}]


def test_a_long_agent_outage_restarts_the_idle_clock(store: Store) -> None:
    clock = FakeClock(BOOT + timedelta(hours=1))
    run_until(make_agent(store, clock), clock, "warning")
    clock.tick(3600)
    after = make_agent(store, clock).evaluate()
    assert after.decision.kind == "idle" and after.decision.idle_since == clock.now
    assert {"idle_clock_restarted", "warning_cancelled"} <= {e.kind for e in store.events("vm-1")}


def test_unknown_signal_never_stops_the_machine(settings: Settings) -> None:
    store = DbStore(settings.require_database_url())
    clock = FakeClock(BOOT + timedelta(hours=1))
    probe = CommandProbe(f"{sys.executable} -c 'raise SystemExit(3)'", name="probe1")
    agent = Agent("vm-1", Policy(idle_seconds=0, warn_seconds=0, min_uptime_seconds=0, poll_seconds=10),
                  [probe], store, DryRun(), clock=clock, booted_at=lambda: BOOT)
    outcomes = []
    for _ in range(5):
        outcomes.append(agent.evaluate())
        clock.tick()
    assert {o.decision.kind for o in outcomes} == {"active"} and all(o.stop is None for o in outcomes)
    assert outcomes[0].decision.reasons == ("probe1 unknown: probe exited 3",)
    assert store.events("vm-1") == []


def test_probe_exit_codes_and_timeout() -> None:
    py = sys.executable
    assert CommandProbe(f"{py} -c 'print(\"jobs: 2\")'").sample().state == "active"
    idle = CommandProbe(f"{py} -c 'raise SystemExit(1)'").sample()
    assert idle.state == "idle" and idle.values["exit_code"] == 1
    slow = CommandProbe(f"{py} -c 'import time; time.sleep(5)'", timeout=0.3).sample()
    assert slow.state == "unknown" and "timed out" in slow.evidence
    assert CommandProbe("/nonexistent/probe").sample().state == "unknown"


def test_command_action_runs_after_hooks_and_records_the_stop(settings: Settings, tmp_path: Path) -> None:
    store, clock = DbStore(settings.require_database_url()), FakeClock(BOOT + timedelta(hours=1))
    hook_ran, stopped = tmp_path / "hook-ran", tmp_path / "stopped"
    agent = make_agent(store, clock, action=Command(f"touch {stopped}"), hooks=[f"touch {hook_ran}"])
    outcome = run_until(agent, clock, "stop")
    assert hook_ran.exists() and stopped.exists()
    assert outcome.stop is not None and outcome.stop.kind == "stopped"
    assert outcome.stop.detail == {"action": "command", "detail": f"`touch {stopped}` exited 0"}
    clock.tick()
    assert agent.evaluate().decision.kind == "idle"  # a new idle period before any further stop


def test_a_failing_hook_aborts_the_stop_and_says_so(settings: Settings, tmp_path: Path) -> None:
    store, clock = DbStore(settings.require_database_url()), FakeClock(BOOT + timedelta(hours=1))
    stopped = tmp_path / "stopped"
    hook = f"{sys.executable} -c 'import sys; sys.stderr.write(\"backup failed\"); sys.exit(4)'"
    outcome = run_until(make_agent(store, clock, action=Command(f"touch {stopped}"), hooks=[hook]), clock, "stop")
    assert not stopped.exists()
    assert outcome.stop is not None and outcome.stop.kind == "stop_aborted"
    assert outcome.stop.detail["detail"] == f"pre-stop hook `{hook}` exited 4: backup failed: stop aborted"
    assert store.events("vm-1")[0].kind == "stop_aborted"


def test_a_slow_hook_times_out() -> None:
    message = run_hooks(["true", f"{sys.executable} -c 'import time; time.sleep(5)'"], timeout=0.3)
    assert message is not None and "timed out after 0.3 s: stop aborted" in message
    assert run_hooks(["true"], timeout=5) is None


def test_gcp_action_stops_this_instance_exactly_once(settings: Settings) -> None:
    fake = FakeGce(project="p-1", zone="europe-west4-a", name="stream-gpu-1").start()
    try:
        fake.add("stream-gpu-1", "europe-west4-a")
        fake.add("stream-gpu-2", "europe-west4-a")
        store, clock = DbStore(settings.require_database_url()), FakeClock(BOOT + timedelta(hours=1))
        agent = make_agent(store, clock, action=GcpStop(fake.address, fake.endpoint), host="stream-gpu-1")
        outcome = run_until(agent, clock, "stop")
        for _ in range(10):  # later polls must not stop it again
            clock.tick()
            agent.evaluate()
        assert fake.verb_calls("stop") == ["/compute/v1/projects/p-1/zones/europe-west4-a/instances/stream-gpu-1/stop"]
        assert fake.instances["stream-gpu-1"]["status"] == "TERMINATED"
        assert fake.instances["stream-gpu-2"]["status"] == "RUNNING"
        assert outcome.stop is not None and outcome.stop.kind == "stopped"
        assert "projects/p-1/zones/europe-west4-a/instances/stream-gpu-1" in outcome.stop.detail["detail"]
    finally:
        fake.stop()


def test_gcp_action_off_gce_fails_without_stopping() -> None:
    from backend.embedded.ports import free_port

    outcome = GcpStop(f"127.0.0.1:{free_port()}").stop()
    assert not outcome.ok and "GCE metadata server" in outcome.detail


def test_savings_ledger_reads_real_stops_to_the_next_boot(settings: Settings, db: psycopg.Connection) -> None:
    set_price(db, SYSTEM, "NVIDIA L4", "on_demand", Decimal("0.75"), effective_from=BOOT - timedelta(days=1))
    for index in range(2):
        db.execute("INSERT INTO gpus (gpu_uuid, host, gpu_index, model, first_seen, last_seen) "
                   "VALUES (%s, 'vm-1', %s, 'NVIDIA L4', %s, %s)", (f"GPU-{index}", index, BOOT, BOOT))
    store, clock = DbStore(settings.require_database_url()), FakeClock(BOOT + timedelta(hours=1))
    stopped = run_until(make_agent(store, clock, action=Command("true")), clock, "stop")
    assert stopped.stop is not None and stopped.stop.kind == "stopped"
    next_boot = stopped.stop.at + timedelta(hours=2)
    clock.now = next_boot + timedelta(minutes=1)
    assert make_agent(store, clock, boot=next_boot).evaluate().decision.events == ("booted",)
    dry = run_until(make_agent(store, clock, boot=next_boot, host="vm-2"), clock, "stop")
    assert dry.stop is not None and dry.stop.kind == "would_stop"

    ledger = costs.savings_ledger(Principal("vic", Role.viewer), BOOT, BOOT + timedelta(days=1), settings=settings)
    (row,) = [r for r in ledger.rows if r.kind == "stopped"]
    assert (row.host, row.action, row.gpus, row.stopped_at, row.started_at, row.hours) == (
        "vm-1", "command", 2, stopped.stop.at, next_boot, 2.0)
    assert ledger.saved_usd == pytest.approx(3.0) and ledger.saved_gpu_hours == 4.0
    assert [r.host for r in ledger.rows if r.kind == "would_stop"] == ["vm-2"]


def test_database_down_is_one_clear_error_and_the_machine_stays_up(tmp_path: Path) -> None:
    from backend.embedded.ports import free_port
    from backend.errors import Unavailable

    store = DbStore(f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=1")
    agent = make_agent(store, FakeClock(BOOT + timedelta(hours=1)), action=Command(f"touch {tmp_path / 'stopped'}"))
    with pytest.raises(Unavailable, match="the agent keeps the machine up"):
        agent.evaluate()
    assert not (tmp_path / "stopped").exists()


def test_an_unreachable_state_database_is_one_log_line_per_poll(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    import threading

    unreachable = DbStore(f"postgresql:///nowhere?host={tmp_path}&connect_timeout=1")
    clock = FakeClock(BOOT + timedelta(hours=1))
    agent = make_agent(unreachable, clock, policy=Policy(poll_seconds=0.05))
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    agent.run(stop)
    failures = [r for r in caplog.records if "evaluation failed" in r.getMessage()]
    assert failures and all(r.exc_info is None and "state store unreachable" in r.getMessage() for r in failures)
