"""The demo's VM fleet: the simulated GPU hosts as Compute Engine instances, each watched by its own auto-shutdown
agent.

The instances are served by the demo's loopback Compute API (`compute_api.ComputeApi`), so the console lists,
starts and stops them through the official client exactly as on GCP (`VM_PROVIDER=gcp`, `COMPUTE_ENDPOINT`). Each
agent runs the production `Agent` with the production signals where the demo has the real source: GPU telemetry
read from that host's simulated rows, RTMP publishers read from the demo's nginx `/stat` (only the streams bound to
the host), scheduled streams from the database. CPU, network and SSH exist only as simulated readings. A due stop
goes through the `gcp` action against the same Compute API, so the VM really stops and its savings are counted from
the agent's `stopped` event.

The simulator's pinned workloads and the fault schedule give every state within the first minutes: two hosts busy
on GPU, one kept up by a live stream, one idle host held in a long warning countdown, one stopped by auto-shutdown
(and started again minutes later for a scheduled stream, `seed.seed_scheduled_stream`), and one whose GPU fell off
the bus, so its GPU signal is unknown and it stays up.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from backend.config import Settings
from backend.demo.compute_api import ComputeApi
from backend.vm import actions
from backend.vm.agent import Agent
from backend.vm.gce_metadata import InstanceIdentity
from backend.vm.policy import Policy
from backend.vm.signals import Reading, Signal
from backend.vm.signals.gpu import GpuSignal, GpuThresholds
from backend.vm.signals.rtmp import RtmpSignal
from backend.vm.signals.schedule import ScheduleSignal
from backend.vm.state import open_store

log = logging.getLogger(__name__)

PROJECT = "demo-project"
PLATFORM_LABEL = ("platform", "stream-platform")
GPUS_PER_HOST = 4
POLL_S = 5.0
IDLE_S, WARN_S = 30.0, 45.0
COUNTDOWN_S = 86_400.0
"""The countdown host's idle and warning periods: warned from its first minute, stopped only after a day."""
UPTIME = timedelta(days=3)
"""How long the instances have been up when the demo starts: older than every simulated GPU row of the backfill."""


@dataclass(frozen=True)
class Shape:
    """A GCE machine shape for a simulator model (accelerator type as the Compute API names it)."""

    machine_type: str
    accelerator: str


SHAPES = {"h100": Shape("a3-highgpu-4g", "nvidia-h100-80gb"), "a100": Shape("a2-ultragpu-4g", "nvidia-a100-80gb"),
          "l4": Shape("g2-standard-48", "nvidia-l4")}
MODELS = ("h100", "a100", "l4")  # the simulator's default cycle: host i runs MODELS[i % 3]


@dataclass(frozen=True)
class HostPlan:
    """One demo host: its simulated workload and the state it is meant to show."""

    name: str
    zone: str
    role: str
    workload: str
    idle_s: float | None = None
    warn_s: float | None = None
    """None: the fleet's idle and warning periods."""


FLEET: tuple[HostPlan, ...] = (
    HostPlan("gpu-node-00", "europe-west4-a", "busy", "training"),
    HostPlan("gpu-node-01", "europe-west4-b", "busy", "training"),
    HostPlan("gpu-node-02", "europe-west4-a", "stream", "idle"),
    HostPlan("gpu-node-03", "europe-west4-c", "countdown", "idle", idle_s=COUNTDOWN_S, warn_s=COUNTDOWN_S),
    HostPlan("gpu-node-04", "europe-west4-b", "autostop", "idle"),
    HostPlan("gpu-node-05", "europe-west4-a", "unknown", "idle"),
)
FAULTS = ("thermal:gpu-node-00/1", "ecc:gpu-node-01/2", "power_brake:gpu-node-01/0", "nvlink:gpu-node-00/2",
          "xid79:gpu-node-05/1@20h")
"""Faults for the busy hosts' alerts, and the GPU that falls off the bus (45 min after its onset, ~3 h before the
live part of a 24 h backfill) and leaves gpu-node-05's GPU signal unknown."""


def host_workloads() -> dict[str, str]:
    return {plan.name: plan.workload for plan in FLEET}


def compute_api(now: datetime | None = None) -> ComputeApi:
    """The fleet as instances of the demo project, up for `UPTIME`, labelled like the platform's VMs."""
    api = ComputeApi(project=PROJECT, zone=FLEET[0].zone, name=FLEET[0].name)
    started = ((now or datetime.now(UTC)) - UPTIME).isoformat(timespec="milliseconds")
    for i, plan in enumerate(FLEET):
        model = MODELS[i % len(MODELS)]
        shape = SHAPES[model]
        api.add(plan.name, plan.zone, labels={PLATFORM_LABEL[0]: PLATFORM_LABEL[1], "role": plan.role, "gpu": model},
                machine_type=shape.machine_type, gpus=GPUS_PER_HOST, accelerator=shape.accelerator, started=started)
    return api


def compute_environment(api: ComputeApi) -> dict[str, str]:
    """What the API and console need to see the fleet through the Compute path."""
    return {"VM_PROVIDER": "gcp", "GCP_PROJECT_ID": api.project, "COMPUTE_ENDPOINT": api.endpoint,
            "VM_LABEL_FILTER": "=".join(PLATFORM_LABEL)}


@dataclass(frozen=True)
class Simulated:
    """A signal the demo has no real source for (CPU, network, SSH of a simulated host): a fixed reading."""

    name: str
    state: str
    evidence: str

    def sample(self) -> Reading:
        return Reading(self.name, self.state, f"{self.evidence} (simulated)")  # type: ignore[arg-type]


def host_signals(plan: HostPlan, settings: Settings, api: ComputeApi, stat_url: str | None,
                 streams: Mapping[str, str]) -> list[Signal]:
    """The production GPU, RTMP and scheduled-stream signals on this host's data, plus simulated CPU, network and
    SSH."""
    bound = [stream for stream, host in streams.items() if host == plan.name]
    lead = timedelta(seconds=settings.streams_schedule_lead_seconds)
    return [
        RtmpSignal(stat_url, streams=bound) if stat_url else Simulated("rtmp", "n/a", "nginx-rtmp not installed"),
        GpuSignal(GpuThresholds(settings.autoshutdown_gpu_util_percent), plan.name, settings.database_url,
                  use_nvml=False, expected=True, booted_at=lambda: api.last_start(plan.name)),
        ScheduleSignal(plan.name, settings.database_url, lead),
        Simulated("cpu", "idle", "CPU 3.1% busy (< 10%)"),
        Simulated("network", "idle", "network 4 KiB/s"),
        Simulated("ssh", "idle", "no SSH session"),
    ]


@dataclass
class Fleet:
    """One agent thread per host; a host the Compute API reports stopped is not evaluated (its agent is down
    with it) and reports a new boot when started again."""

    settings: Settings
    api: ComputeApi
    stat_url: str | None = None
    streams: Mapping[str, str] = field(default_factory=dict)
    """stream name → the host that carries it."""
    poll_s: float = POLL_S
    idle_s: float = IDLE_S
    warn_s: float = WARN_S
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def agent(self, plan: HostPlan) -> Agent:
        identity = InstanceIdentity(self.api.project, plan.zone, plan.name)
        return Agent(
            host=plan.name,
            policy=Policy(idle_seconds=plan.idle_s or self.idle_s, warn_seconds=plan.warn_s or self.warn_s,
                          min_uptime_seconds=0, poll_seconds=self.poll_s),
            signals=host_signals(plan, self.settings, self.api, self.stat_url, self.streams),
            store=open_store(self.settings),
            action=actions.GcpStop(self.settings.gce_metadata_host, self.api.endpoint, instance=identity),
            booted_at=lambda: self.api.last_start(plan.name),
        )

    def start(self) -> Fleet:
        for plan in FLEET:
            thread = threading.Thread(target=self._watch, args=(self.agent(plan),), name=f"agent-{plan.name}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("auto-shutdown agents watch %d hosts (idle %g s, warning %g s)", len(FLEET), self.idle_s, self.warn_s)
        return self

    def _watch(self, agent: Agent) -> None:
        while not self._stop.is_set():
            if self.api.status(agent.host) == "RUNNING":
                _quietly(agent.evaluate, agent.host)
            self._stop.wait(self.poll_s)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()


def _quietly(evaluate: Callable[[], object], host: str) -> None:
    """An evaluation that fails leaves the host up (as the agent does), with one log line."""
    try:
        evaluate()
    except Exception as exc:  # the agent's own rule: a failed evaluation never stops the host
        log.warning("auto-shutdown on %s: evaluation failed, the host stays up (%s)", host, exc)
