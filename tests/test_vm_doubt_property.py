"""Doubt never stops a machine: combinations of signal outcomes through the real signals, agent and policy.

Each example puts every signal's real source into one state: a fake pynvml at the NVML adapter's seam, GPU telemetry
rows in PostgreSQL, a utmp file, a loopback nginx `/stat`, probe commands. The agent then polls with a fake clock for
longer than a stop takes. An outcome that involves doubt (an error, a missing field, stale data) must read `unknown`
and keep the machine up; busy must read `active`; when every signal is idle or n/a the machine must stop, which
shows each run is long enough to reach a stop.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import psycopg
import pynvml
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import backend.nvml
from backend.config import Settings
from backend.nvml import hardware_evidence
from backend.vm.actions import DryRun
from backend.vm.agent import Agent
from backend.vm.policy import Policy
from backend.vm.signals import Signal
from backend.vm.signals.custom import CommandProbe
from backend.vm.signals.gpu import GpuSignal, GpuThresholds
from backend.vm.signals.rtmp import RtmpSignal
from backend.vm.signals.ssh import SshSignal
from backend.vm.state import FileStore
from tests.fakes.nvml import FakeGpu, FakeNvml
from tests.test_vm_signals import add_gpu

POLICY = Policy(idle_seconds=30, warn_seconds=10, min_uptime_seconds=0, poll_seconds=10)
POLLS = 5  # an all-idle host is warned at the 3rd poll and stopped at the 4th
OUTCOMES: dict[str, tuple[str, ...]] = {
    "gpu": ("ok", "ok telemetry", "busy", "raises", "crashes", "missing field", "missing field telemetry", "stale",
            "silent GPU", "no driver on GPU hardware", "n/a"),
    "ssh": ("ok", "raises", "missing", "n/a"),
    "rtmp": ("ok", "busy", "raises", "missing field", "n/a"),
    "probe1": ("ok", "busy", "raises", "missing", "n/a"),
}
CLEAR = frozenset({"ok", "ok telemetry", "n/a"})
STAT = {
    "/idle": b"<rtmp><server><application><name>live</name><live></live></application></server></rtmp>",
    "/live": b"<rtmp><server><application><name>live</name><live><stream><name>cam1</name><time>30000</time>"
             b"<publishing/></stream></live></application></server></rtmp>",
    "/garbage": b"<rtmp><server><application",
}
PROBES = {"ok": "false", "busy": "true", "raises": "sh -c 'exit 3'", "missing": "/nonexistent/probe"}


class StatHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = STAT.get(self.path)
        self.send_response(200 if body else 500)
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def stat_base() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StatHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    """The sources, set up once; `signals()` points real signals at the ones an example asks for."""

    tmp: Path
    database_url: str
    stat_base: str
    start: datetime

    def gpu(self, outcome: str, fake: FakeNvml, clock: FakeClock) -> GpuSignal:
        no_driver = [pynvml.NVML_ERROR_LIBRARY_NOT_FOUND] * (POLLS + 1)
        fake.gpus = [FakeGpu(util=90 if outcome == "busy" else 0)]
        fake.init_errors = {"raises": [pynvml.NVML_ERROR_UNKNOWN] * (POLLS + 1), "ok": [], "busy": [],
                            "crashes": [], "missing field": []}.get(outcome, no_driver)
        if outcome == "crashes":
            fake.count_errors = [OSError("NVML library call failed")] * (POLLS + 1)
        if outcome == "missing field":
            fake.gpus[0].failing = {"nvmlDeviceGetUtilizationRates": pynvml.NVML_ERROR_NOT_SUPPORTED}
        host = {"ok telemetry": "t-idle", "missing field telemetry": "t-null", "stale": "t-stale",
                "silent GPU": "t-half"}.get(outcome, "t-none")
        dev = self.tmp / ("dev-gpu" if outcome == "no driver on GPU hardware" else "dev-none")
        return GpuSignal(GpuThresholds(util_percent=5.0), host, self.database_url,
                         hardware=functools.partial(hardware_evidence, dev=dev, pci=self.tmp / "pci-none"),
                         clock=clock, booted_at=lambda: self.start - timedelta(hours=1))

    def signals(self, outcome: dict[str, str], fake: FakeNvml, clock: FakeClock) -> list[Signal]:
        signals: list[Signal] = [self.gpu(outcome["gpu"], fake, clock)]
        utmp = {"ok": "utmp-file", "raises": "utmp-dir", "missing": "utmp-missing"}.get(outcome["ssh"])
        if utmp:  # n/a: AUTOSHUTDOWN_SSH=false leaves the signal out
            signals.append(SshSignal(self.tmp / utmp))
        path = {"ok": "/idle", "busy": "/live", "raises": "/error", "missing field": "/garbage"}.get(outcome["rtmp"])
        signals.append(RtmpSignal(self.stat_base + path if path else None))
        if outcome["probe1"] != "n/a":
            signals.append(CommandProbe(PROBES[outcome["probe1"]], timeout=5, name="probe1"))
        return signals


@pytest.fixture
def world(settings: Settings, db: psycopg.Connection, tmp_path: Path, stat_base: str) -> World:
    start = datetime.now(UTC).replace(microsecond=0)
    (tmp_path / "dev-none").mkdir()
    (tmp_path / "dev-gpu").mkdir()
    (tmp_path / "dev-gpu" / "nvidia0").touch()
    (tmp_path / "pci-none").mkdir()
    (tmp_path / "utmp-file").write_bytes(b"")
    (tmp_path / "utmp-dir").mkdir()
    fresh = timedelta(seconds=20)  # and still fresh at the last poll, 40 s later
    add_gpu(db, "t-idle", "GPU-t-idle", 0, util=0.0, used=100, ago=fresh)
    add_gpu(db, "t-null", "GPU-t-null", 0, util=None, used=100, ago=fresh)
    add_gpu(db, "t-stale", "GPU-t-stale", 0, util=0.0, used=100, ago=timedelta(minutes=30))
    add_gpu(db, "t-half", "GPU-t-half0", 0, util=0.0, used=100, ago=fresh)
    add_gpu(db, "t-half", "GPU-t-half1", 1, util=0.0, used=100, ago=timedelta(minutes=10))
    return World(tmp_path, settings.require_database_url(), stat_base, start)


def expected_state(name: str, outcome: str) -> str:
    if name == "ssh" and outcome == "ok" and psutil.users():
        return "active"  # someone is really logged in to this machine
    if outcome == "n/a":
        return "n/a"
    return "idle" if outcome in CLEAR else "active" if outcome == "busy" else "unknown"


def test_doubt_never_stops_the_machine(world: World) -> None:
    runs = itertools.count()

    @hypothesis_settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.fixed_dictionaries({name: st.sampled_from(outcomes) for name, outcomes in OUTCOMES.items()}))
    def check(outcome: dict[str, str]) -> None:
        fake, clock, run = FakeNvml(), FakeClock(world.start), next(runs)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(backend.nvml, "pynvml", fake.module)
            agent = Agent(host="vm-1", policy=POLICY, signals=world.signals(outcome, fake, clock),
                          store=FileStore(world.tmp / f"state-{run}.json"), action=DryRun(), clock=clock,
                          booted_at=lambda: world.start - timedelta(hours=1))
            decisions = []
            for _ in range(POLLS):
                decisions.append(agent.evaluate().decision)
                clock.now += timedelta(seconds=POLICY.poll_seconds)
        expected = {name: expected_state(name, o) for name, o in outcome.items()}
        for decision in decisions:
            seen = {r.signal: r.state for r in decision.readings}
            assert seen == {name: state for name, state in expected.items() if name in seen}, decision.readings
        kinds = [d.kind for d in decisions]
        if all(state in ("idle", "n/a") for state in expected.values()):
            assert "stop" in kinds, (outcome, kinds)
        else:
            assert set(kinds) == {"active"}, (outcome, kinds, decisions[-1].reasons)

    check()
