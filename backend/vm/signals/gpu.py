"""GPU utilization and memory in use: this host's GPUs through the NVML adapter, else this host's telemetry rows.

Which answer, in order (docs/autoshutdown.md, "The GPU signal"):

1. NVML reads the GPUs: any GPU busy is `active`; any GPU whose utilization or memory NVML cannot give (NotSupported,
   e.g. MIG) is `unknown`; otherwise `idle`.
2. NVML fails in any way other than "absent" (no library, no loaded driver, no GPU): `unknown`. So is an absent
   NVML on a machine with NVIDIA hardware (`/dev/nvidiaN` or an NVIDIA display controller on the PCI bus).
   Nothing is cached: NVML is tried again at every poll.
3. NVML absent and no NVIDIA hardware here: this host's telemetry decides when it has any. A GPU that reported since
   this boot and has no row in the freshness window, or a row without utilization or memory, is `unknown`.
4. Nothing at all: `n/a` — unless `AUTOSHUTDOWN_GPU_EXPECTED` says this host has GPUs; then `unknown`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from backend.db.connection import connect_url
from backend.nvml import MIB, NA, Device, Nvml, NvmlUnavailable, hardware_evidence
from backend.vm.signals.base import Reading, boot_time, utc_now


@dataclass(frozen=True)
class GpuThresholds:
    util_percent: float = 5.0
    memory_mib: float | None = None
    """Memory in use above this counts as active; unset: memory is evidence only (a loaded model may sit idle)."""


@dataclass(frozen=True)
class GpuReading:
    """One GPU as the auto-shutdown agent saw it; None where the source could not give the value."""

    index: int
    util_percent: float | None
    memory_used_mib: float | None
    model: str = "GPU"


def _figure(value: float | None, unit: str) -> str:
    return f"{'?' if value is None else format(value, '.0f')}{unit}"


def _missing(gpu: GpuReading) -> list[str]:
    return [f"GPU{gpu.index} {what}" for what, value in (("utilization", gpu.util_percent),
                                                         ("memory", gpu.memory_used_mib)) if value is None]


def judge(gpus: list[GpuReading], limits: GpuThresholds, source: str) -> Reading:
    """One reading from per-GPU values: any GPU above a threshold makes the host active, any missing value (that
    could hide a busy GPU) unknown."""
    memory_limit = limits.memory_mib if limits.memory_mib is not None else float("inf")
    busy = [g for g in gpus if (g.util_percent or 0) >= limits.util_percent or (g.memory_used_mib or 0) >= memory_limit]
    missing = [what for g in gpus for what in _missing(g)]
    values: dict[str, Any] = {"source": source, "gpus": [asdict(g) for g in gpus]}
    summary = ", ".join(f"GPU{g.index} {_figure(g.util_percent, '%')} / {_figure(g.memory_used_mib, ' MiB')}"
                        for g in gpus)
    if busy:
        return Reading("gpu", "active", f"GPU busy ({source}): {summary}", values)
    if missing:
        return Reading("gpu", "unknown", f"{source} does not report {', '.join(missing)} "
                                         f"(not supported, e.g. MIG): {summary}", values)
    return Reading("gpu", "idle", f"GPU idle below {limits.util_percent:g}% ({source}): {summary}", values)


def nvml_reading(device: Device) -> GpuReading:
    """The adapter's "not supported" (`NA`) becomes None: unknown, never 0."""
    rates, memory = device.utilization_rates(), device.memory_info()
    return GpuReading(device.index, None if rates is NA else float(rates.gpu),
                      None if memory is NA else memory.used / MIB, device.name)


@dataclass(frozen=True)
class TelemetryGpu:
    """A GPU of the `gpus` registry: when it last reported, and its newest sample inside the freshness window."""

    index: int
    last_seen: datetime
    sampled_at: datetime | None
    util_percent: float | None
    memory_used_mib: float | None


def latest_telemetry(conn: psycopg.Connection, host: str, fresh_after: datetime) -> list[TelemetryGpu]:
    """Every GPU `host` ever reported, each with its newest `gpu_metrics` row after `fresh_after` (if any).

    Empty when the telemetry tables are absent or the host never reported a GPU.
    """
    if not conn.execute("SELECT to_regclass('gpus') IS NOT NULL AS p").fetchone()["p"]:
        return []
    rows = conn.execute(
        """SELECT g.gpu_index, g.last_seen, m.time, m.gpu_util, m.fb_used FROM gpus g
           LEFT JOIN LATERAL (SELECT time, gpu_util, fb_used FROM gpu_metrics
                              WHERE gpu_uuid = g.gpu_uuid AND time > %s ORDER BY time DESC LIMIT 1) m ON true
           WHERE g.host = %s ORDER BY g.gpu_index, g.gpu_uuid""",
        (fresh_after, host),
    ).fetchall()
    return [TelemetryGpu(r["gpu_index"], r["last_seen"], r["time"], r["gpu_util"], r["fb_used"]) for r in rows]


class GpuSignal:
    name = "gpu"

    def __init__(
        self,
        limits: GpuThresholds,
        host: str,
        database_url: str | None = None,
        stale_after: timedelta = timedelta(minutes=5),
        use_nvml: bool = True,
        *,
        expected: bool = False,
        hardware: Callable[[], list[str]] = hardware_evidence,
        clock: Callable[[], datetime] = utc_now,
        booted_at: Callable[[], datetime] = boot_time,
    ) -> None:
        """`use_nvml=False`: telemetry only (no NVML, no hardware check). `expected`: AUTOSHUTDOWN_GPU_EXPECTED."""
        self.limits, self.host, self.database_url, self.stale_after = limits, host, database_url, stale_after
        self.nvml = Nvml() if use_nvml else None
        self.expected, self.hardware, self.clock, self.booted_at = expected, hardware, clock, booted_at

    def sample(self) -> Reading:
        absent = "NVML not used"
        if self.nvml is not None:
            try:
                devices = self.nvml.devices()
            except NvmlUnavailable as exc:
                if not exc.absent:
                    return Reading(self.name, "unknown", f"{exc}; retrying at the next poll")
                absent = str(exc)
            else:
                if devices:
                    return judge([nvml_reading(d) for d in devices], self.limits, "NVML")
                absent = "NVML sees no GPU"
            hardware = self.hardware()
            if hardware:
                return Reading(self.name, "unknown", f"{absent}, but this host has NVIDIA hardware "
                                                     f"({', '.join(hardware[:3])})", {"hardware": hardware})
        if self.database_url:
            reading = self._telemetry()
            if reading is not None:
                return reading
            absent += f"; no GPU telemetry for {self.host}"
        if self.expected:
            return Reading(self.name, "unknown", f"AUTOSHUTDOWN_GPU_EXPECTED says this host has GPUs, but none can "
                                                 f"be read; {absent}")
        return Reading(self.name, "n/a", f"no GPU on this host; {absent}")

    def _telemetry(self) -> Reading | None:
        """This host's telemetry, or None when it never reported a GPU."""
        now = self.clock()
        try:
            with connect_url(self.database_url, connect_timeout=5) as conn:
                gpus = latest_telemetry(conn, self.host, now - self.stale_after)
        except psycopg.Error as exc:
            return Reading(self.name, "unknown", f"GPU telemetry could not be read ({type(exc).__name__})")
        if not gpus:
            return None
        newest = max(g.last_seen for g in gpus)
        values: dict[str, Any] = {"source": "telemetry", "newest": newest.isoformat()}
        this_boot = [g for g in gpus if g.last_seen >= self.booted_at()]
        silent = [g for g in this_boot if g.sampled_at is None]
        age = (now - newest).total_seconds()
        if not this_boot:
            return Reading(self.name, "unknown", f"no GPU telemetry for {self.host} since this boot "
                                                 f"(newest {age:.0f} s old)", values)
        if len(silent) == len(this_boot):
            return Reading(self.name, "unknown", f"GPU telemetry for {self.host} is stale ({age:.0f} s old)", values)
        if silent:
            quiet = ", ".join(f"GPU{g.index} (last seen {(now - g.last_seen).total_seconds():.0f} s ago)"
                              for g in silent)
            return Reading(self.name, "unknown", f"GPU telemetry for {self.host}: no recent sample from {quiet} "
                                                 "while other GPUs report", values)
        return judge([GpuReading(g.index, g.util_percent, g.memory_used_mib) for g in this_boot],
                     self.limits, "telemetry")
