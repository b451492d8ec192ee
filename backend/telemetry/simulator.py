"""A deterministic fleet of simulated GPUs producing `gpu.metrics.v1` samples that look like DCGM's.

Each GPU runs a workload (inference, training, batch, transcode or idle) whose load moves through phases (idle,
ramp, steady, bursty) and, for inference, follows the day. Power, temperature (with thermal lag), clocks, memory
and the DCGM counters follow from the load; counters only ever grow. Faults from `backend.telemetry.faults` are
overlaid at their scheduled times. Everything comes from `seed`: the same seed, start and interval give the same
samples, byte for byte. The fleet keeps state, so a second `samples()` call continues where the first ended
(backfill, then live) with counters still monotonic.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from backend.errors import InvalidInput
from backend.telemetry.faults import FaultEvent, FaultSchedule, FaultSpec
from backend.telemetry.messages import GpuSample


@dataclass(frozen=True)
class GpuModel:
    """Datasheet-level facts that shape a model's telemetry."""

    key: str
    name: str
    driver: str
    tdp_w: float
    idle_w: float
    memory_mib: int
    sm_clock_max: int
    sm_clock_idle: int
    mem_clock: int
    temp_rise_at_tdp: float  # °C above idle at full power
    hbm: bool  # HBM reports a memory temperature; GDDR (L4) does not
    nvlink: bool
    served_models: tuple[str, ...]


MODELS: dict[str, GpuModel] = {
    "h100": GpuModel("h100", "NVIDIA H100 80GB HBM3", "550.90.07", 700, 72, 81559, 1980, 345, 2619, 42, True, True,
                     ("llama-3.1-70b", "llama-3.1-8b")),
    "a100": GpuModel("a100", "NVIDIA A100-SXM4-80GB", "535.183.01", 400, 58, 81920, 1410, 210, 1593, 38, True, True,
                     ("llama-3.1-70b", "mixtral-8x7b")),
    "l4": GpuModel("l4", "NVIDIA L4", "550.90.07", 72, 16, 23034, 2040, 210, 6251, 46, False, False,
                   ("mistral-7b", "llama-3.1-8b")),
}

WORKLOADS = ("inference", "training", "batch", "transcode", "idle")
# How likely each workload is per model (transcoding is what L4s are bought for).
_WORKLOAD_WEIGHTS: dict[str, tuple[float, ...]] = {
    "h100": (0.5, 0.3, 0.1, 0.0, 0.1),
    "a100": (0.4, 0.3, 0.2, 0.0, 0.1),
    "l4": (0.45, 0.0, 0.05, 0.4, 0.1),
}
# Phase → (next phases, their weights, mean duration in minutes).
_PHASES: dict[str, tuple[tuple[str, ...], tuple[float, ...], float]] = {
    "idle": (("ramp",), (1.0,), 40),
    "ramp": (("steady", "bursty"), (0.6, 0.4), 8),
    "steady": (("bursty", "steady", "idle"), (0.35, 0.45, 0.2), 90),
    "bursty": (("steady", "bursty", "idle"), (0.5, 0.3, 0.2), 30),
}
# Typical load level in steady phase per workload, and how often the workload sits idle at all.
_LEVEL = {"inference": 0.7, "training": 0.95, "batch": 0.85, "transcode": 0.6, "idle": 0.03}
_IDLE_BIAS = {"inference": 0.1, "training": 0.05, "batch": 0.5, "transcode": 0.15, "idle": 1.0}

THERMAL_PEAK_C = 96.0
XID_DBE, XID_FELL_OFF_BUS = 48, 79
IDLE, SW_POWER_CAP, HW_SLOWDOWN, SW_THERMAL, HW_THERMAL, HW_POWER_BRAKE = 0x1, 0x4, 0x8, 0x20, 0x40, 0x80


def _poisson(rng: random.Random, lam: float) -> int:
    """Event counts per step (Knuth for small rates, a rounded normal for large ones)."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _clamp(x: float, lo: float = 0.0, hi: float = 1.0) -> float:
    return lo if x < lo else hi if x > hi else x


def diurnal(at: datetime) -> float:
    """Traffic shape of a day (UTC): lowest around 02:00, highest around 14:00; between 0.25 and 1."""
    hour = at.hour + at.minute / 60
    return 0.625 + 0.375 * math.sin(2 * math.pi * (hour - 8) / 24)


@dataclass(frozen=True)
class SimGpu:
    """The identity of a simulated GPU (stable for a seed)."""

    host: str
    index: int
    uuid: str
    model: GpuModel
    workload: str
    served_model: str | None
    ordinal: int
    labels: dict[str, str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        """Labels are built once: every sample of this GPU shares them."""
        object.__setattr__(self, "labels", {"pci_bus_id": f"00000000:{0x18 + 0x10 * self.index:02X}:00.0",
                                            "device": f"nvidia{self.index}", "workload": self.workload})


@dataclass
class _State:
    """What a GPU remembers between samples: load phase, temperature and counters."""

    rng: random.Random
    phase: str
    phase_left: float  # seconds
    level: float
    util: float
    temp: float
    counters: dict[str, int] = field(default_factory=dict)
    xid: int = 0
    stopped: bool = False
    dbe_done: bool = False


class Fleet:
    """`hosts` × `gpus_per_host` simulated GPUs; host i runs model `models[i % len(models)]`."""

    def __init__(self, hosts: int = 2, gpus_per_host: int = 8, seed: int = 0, faults: Sequence[FaultSpec] = (),
                 start: datetime | None = None, models: Sequence[str] = ("h100", "a100", "l4"),
                 host_prefix: str = "gpu-node", host_workloads: Mapping[str, str] | None = None) -> None:
        """`host_workloads` pins every GPU of a host to one workload (the demo keeps some hosts idle)."""
        if not 1 <= hosts <= 10_000:
            raise InvalidInput("hosts must be between 1 and 10000")
        if not 1 <= gpus_per_host <= 16:
            raise InvalidInput("gpus per host must be between 1 and 16")
        unknown = [m for m in models if m not in MODELS]
        if unknown or not models:
            raise InvalidInput(f"unknown GPU model {', '.join(unknown) or '(none)'}: choose from {', '.join(MODELS)}")
        if start is not None and start.tzinfo is None:
            raise InvalidInput("start must be timezone-aware (UTC)")
        pinned = dict(host_workloads or {})
        if bad := sorted(w for w in pinned.values() if w not in WORKLOADS):
            raise InvalidInput(f"unknown workload {', '.join(bad)}: choose from {', '.join(WORKLOADS)}")
        self.seed = seed
        self.start = (start or datetime.now(UTC)).astimezone(UTC)
        self.gpus: list[SimGpu] = []
        for h in range(hosts):
            model = MODELS[models[h % len(models)]]
            host = f"{host_prefix}-{h:02d}"
            for i in range(gpus_per_host):
                rng = random.Random(f"{seed}/{host}/{i}")
                gpu_uuid = f"GPU-{uuid.UUID(int=rng.getrandbits(128), version=4)}"
                workload = rng.choices(WORKLOADS, _WORKLOAD_WEIGHTS[model.key])[0]
                workload = pinned.get(host, workload)
                served = rng.choice(model.served_models) if workload == "inference" else None
                self.gpus.append(SimGpu(host, i, gpu_uuid, model, workload, served, len(self.gpus)))
        self.schedule = FaultSchedule(self._resolve(faults))
        self._faults: dict[str, list[FaultEvent]] = {g.uuid: self.schedule.for_gpu(g.uuid) for g in self.gpus}
        self._states = {g.uuid: self._initial_state(g) for g in self.gpus}
        self._clock: datetime | None = None

    # -- faults ---------------------------------------------------------------------------------------
    def _resolve(self, specs: Sequence[FaultSpec]) -> list[FaultEvent]:
        rng = random.Random(f"{self.seed}/faults")
        taken: set[str] = set()
        events = []
        for spec in specs:
            gpu = self._target(spec, rng, taken)
            taken.add(gpu.uuid)
            onset = spec.onset if spec.onset is not None else timedelta(minutes=rng.randrange(60, 12 * 60))
            events.append(FaultEvent.at(spec.kind, gpu.uuid, gpu.host, gpu.index, self.start + onset))
        return events

    def _target(self, spec: FaultSpec, rng: random.Random, taken: set[str]) -> SimGpu:
        able = [g for g in self.gpus if g.model.nvlink or spec.kind != "nvlink"]
        if spec.target is None:
            free = [g for g in able if g.uuid not in taken] or able
            if not free:
                raise InvalidInput(f"no GPU in this fleet can have a {spec.kind} fault (it needs NVLink: H100 or A100)")
            return rng.choice(free)
        found = [g for g in self.gpus if spec.target in (f"{g.host}/{g.index}", str(g.ordinal), g.uuid)]
        if not found:
            raise InvalidInput(f"fault target {spec.target!r} is not a GPU of this fleet (use HOST/INDEX or 0..N-1)")
        if found[0] not in able:
            raise InvalidInput(f"fault target {spec.target!r} has no NVLink ({found[0].model.name})")
        return found[0]

    # -- simulation -----------------------------------------------------------------------------------
    def _initial_state(self, gpu: SimGpu) -> _State:
        rng = random.Random(f"{self.seed}/{gpu.uuid}/state")
        m = gpu.model
        uptime_s = rng.uniform(1, 30) * 86400
        counters = {
            "total_energy_consumption": int(uptime_s * (m.idle_w + 0.4 * (m.tdp_w - m.idle_w)) * 1000),
            "pcie_replay_counter": rng.choice((0, 0, 0, 1, 2, 5)),
            "ecc_sbe_vol_total": 0, "ecc_dbe_vol_total": 0,
            "ecc_sbe_agg_total": rng.choice((0, 0, 0, 2, 7, 19)), "ecc_dbe_agg_total": 0,
            "retired_pages_sbe": 0, "retired_pages_dbe": 0, "retired_pages_pending": 0,
            "uncorrectable_remapped_rows": 0, "correctable_remapped_rows": rng.choice((0, 0, 0, 1)),
            "row_remap_failure": 0, "power_violation": 0, "thermal_violation": 0,
        }
        if m.nvlink:
            counters |= {"nvlink_crc_flit_error_count_total": 0, "nvlink_replay_error_count_total": 0,
                         "nvlink_recovery_error_count_total": 0,
                         "nvlink_bandwidth_total": int(uptime_s * rng.uniform(2e3, 2e4))}
        phase = "idle" if rng.random() < _IDLE_BIAS[gpu.workload] else "steady"
        return _State(rng, phase, rng.expovariate(1 / (_PHASES[phase][2] * 60)), _LEVEL[gpu.workload],
                      0.0, 26.0 + rng.uniform(-3, 3), counters)

    @property
    def resume_at(self) -> datetime:
        """Where the next `samples()` call starts by default: after the last simulated step."""
        return self._clock or self.start

    def samples(self, start: datetime | None = None, end: datetime | None = None,
                interval: timedelta = timedelta(seconds=10)) -> Iterator[GpuSample]:
        """Samples at start, start + interval, … before `end` (endless without `end`), time-major across the fleet.

        `start` defaults to where the previous call stopped (or the fleet's start). Time never goes backwards: a
        start before the last sample is refused so that counters stay monotonic.
        """
        if interval <= timedelta(0):
            raise InvalidInput("interval must be positive")
        if any(x is not None and x.tzinfo is None for x in (start, end)):
            raise InvalidInput("start and end must be timezone-aware (UTC)")
        t = (start or self.resume_at).astimezone(UTC)
        if self._clock is not None and t < self._clock:
            raise InvalidInput(f"this fleet has already simulated up to {self._clock.isoformat()}; start after it")
        dt = interval.total_seconds()
        while end is None or t < end:
            for gpu in self.gpus:
                sample = self._step(gpu, self._states[gpu.uuid], t, dt)
                if sample is not None:
                    yield sample
            t += interval
            self._clock = t

    def _step(self, gpu: SimGpu, s: _State, t: datetime, dt: float) -> GpuSample | None:
        if s.stopped:
            return None
        m, rng, c = gpu.model, s.rng, s.counters
        self._advance_load(gpu, s, t, dt)
        u = s.util
        faults = [f for f in self._faults[gpu.uuid] if f.onset <= t]

        power = m.idle_w + (m.tdp_w - m.idle_w) * u ** 1.2 * rng.gauss(1.0, 0.012)
        reasons = IDLE if u < 0.05 else 0
        if power >= m.tdp_w:
            power, reasons = m.tdp_w, reasons | SW_POWER_CAP
            c["power_violation"] += int(dt * 1e6 * 0.3)
        sm_clock = m.sm_clock_idle if u < 0.05 else m.sm_clock_max - rng.randrange(0, 45)
        mem_clock = m.mem_clock if u >= 0.05 or m.hbm else 405
        equilibrium = 26.0 + 4 + m.temp_rise_at_tdp * power / m.tdp_w
        s.temp += (equilibrium - s.temp) * (1 - math.exp(-dt / 90))
        temp = s.temp + rng.gauss(0, 0.3)
        extra_replays = 0.0
        for f in faults:
            if f.kind == "thermal":
                frac = _clamp((t - f.onset) / (f.critical_at - f.onset))  # type: ignore[operator]
                temp += (THERMAL_PEAK_C - temp) * frac
                if temp >= 87:
                    reasons |= SW_THERMAL | (HW_THERMAL if temp >= 90 else 0)
                    c["thermal_violation"] += int(dt * 1e6 * frac)
                    sm_clock = int(sm_clock * (1 - 0.35 * frac))
            elif f.kind == "power_brake" and f.active(t):
                reasons |= HW_POWER_BRAKE | HW_SLOWDOWN
                c["power_violation"] += int(dt * 1e6)
                sm_clock = int(m.sm_clock_max * rng.uniform(0.3, 0.4))
                power = min(power, m.idle_w + (m.tdp_w - m.idle_w) * 0.35)
            elif f.kind == "ecc":
                hours = (t - f.onset).total_seconds() / 3600
                sbe = _poisson(rng, 2.0 * math.exp(hours / 2) * dt / 3600)
                c["ecc_sbe_vol_total"] += sbe
                c["ecc_sbe_agg_total"] += sbe
                c["correctable_remapped_rows"] += _poisson(rng, sbe / 10)
                if not s.dbe_done and t >= f.critical_at:  # type: ignore[operator]
                    s.dbe_done = True
                    for name in ("ecc_dbe_vol_total", "ecc_dbe_agg_total", "uncorrectable_remapped_rows",
                                 "retired_pages_dbe"):
                        c[name] += 1
                    c["retired_pages_pending"] = 1
                    s.xid = XID_DBE
            elif f.kind == "xid79":
                minutes = (t - f.onset).total_seconds() / 60
                extra_replays = (5 + 2 * minutes) * dt / 60
                if t >= f.critical_at:  # type: ignore[operator]
                    s.xid, s.stopped, u = XID_FELL_OFF_BUS, True, 0.0
            elif f.kind == "nvlink":
                frac = _clamp((t - f.onset) / (f.critical_at - f.onset))  # type: ignore[operator]
                c["nvlink_crc_flit_error_count_total"] += _poisson(rng, (0.5 + 4.5 * frac) * dt)
                if t >= f.critical_at:  # type: ignore[operator]
                    c["nvlink_replay_error_count_total"] += 1 + _poisson(rng, 0.05 * dt)
                    if c["nvlink_recovery_error_count_total"] == 0:
                        c["nvlink_recovery_error_count_total"] = 1
        c["pcie_replay_counter"] += _poisson(rng, 1e-5 * dt + extra_replays)
        c["total_energy_consumption"] += int(power * dt * 1000)
        if m.nvlink:
            c["nvlink_bandwidth_total"] += int(u * 2.5e4 * dt)

        loaded = gpu.workload in ("inference", "training", "transcode") or u >= 0.05
        fb_used = m.memory_mib * (0.86 if gpu.workload == "training" else 0.72) if loaded else 520.0
        fb_used = round(fb_used + rng.uniform(-64, 64), 0) if loaded else fb_used
        transcode = gpu.workload == "transcode"
        tensor = {"training": 0.55, "inference": 0.35, "batch": 0.45}.get(gpu.workload, 0.02)
        metrics: dict[str, int | float] = {
            "gpu_temp": round(temp, 1),
            "power_usage": round(power, 3),
            "gpu_util": round(u * 100),
            "mem_copy_util": round(u * 100 * (0.55 if gpu.workload == "inference" else 0.35)),
            "enc_util": round(u * 85) if transcode else 0,
            "dec_util": round(u * 55) if transcode else 0,
            "fb_used": fb_used,
            "fb_free": m.memory_mib - fb_used - 512,
            "sm_clock": sm_clock,
            "mem_clock": mem_clock,
            "xid_errors": s.xid,
            "clocks_event_reasons": reasons,
            "gr_engine_active": round(u * 0.97, 4),
            "sm_active": round(u * 0.9, 4),
            "pipe_tensor_active": round(u * tensor, 4),
            "dram_active": round(u * (0.7 if gpu.workload == "inference" else 0.45), 4),
            "pcie_tx_bytes": round(1e5 + u * 4e8 * rng.uniform(0.8, 1.2)),
            "pcie_rx_bytes": round(2e5 + u * 1.6e9 * rng.uniform(0.8, 1.2)),
            **c,
        }
        if m.hbm:
            metrics["memory_temp"] = round(temp + 4 + 3 * u, 1)
        return GpuSample(ts=t, host=gpu.host, gpu_index=gpu.index, gpu_uuid=gpu.uuid, model=m.name,
                         driver=m.driver, source="simulator", labels=gpu.labels, metrics=metrics)

    def _advance_load(self, gpu: SimGpu, s: _State, t: datetime, dt: float) -> None:
        """Move through the load phases; utilization approaches the phase's target."""
        rng = s.rng
        s.phase_left -= dt
        if s.phase_left <= 0:
            choices, weights, _ = _PHASES[s.phase]
            if gpu.workload == "idle" or (s.phase != "idle" and rng.random() < _IDLE_BIAS[gpu.workload] * 0.3):
                s.phase = "idle"
            else:
                s.phase = rng.choices(choices, weights)[0]
            s.phase_left = rng.expovariate(1 / (_PHASES[s.phase][2] * 60))
            s.level = _clamp(_LEVEL[gpu.workload] + rng.uniform(-0.12, 0.05), 0.02, 0.99)
        if s.phase == "idle":
            target = rng.uniform(0, 0.03)
        elif s.phase == "ramp":
            target = min(s.level, s.util + 0.1 + rng.uniform(0, 0.1))
        elif s.phase == "bursty":
            target = s.level * (rng.uniform(0.9, 1.1) if rng.random() < 0.35 else rng.uniform(0.3, 0.6))
        else:
            target = s.level + rng.gauss(0, 0.02)
        if gpu.workload in ("inference", "transcode") and s.phase != "idle":
            target *= diurnal(t)
        s.util = _clamp(s.util + (target - s.util) * (1 - math.exp(-dt / 20)), 0.0, 0.99)
