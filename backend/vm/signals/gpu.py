"""GPU utilization and memory in use: NVML when a driver is present, else this host's latest telemetry row.

With neither (no driver, no `gpu_metrics` rows for this host) the signal is `n/a`. Rows that exist but stopped
arriving are `unknown`: the collector should answer, and a silent GPU is not proof of an idle one.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from backend.vm.signals.base import Reading

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GpuThresholds:
    util_percent: float = 5.0
    memory_mib: float | None = None
    """Memory in use above this counts as active; unset: memory is evidence only (a loaded model may sit idle)."""


@dataclass(frozen=True)
class GpuSample:
    index: int
    util_percent: float
    memory_used_mib: float
    model: str = "GPU"


def judge(samples: list[GpuSample], limits: GpuThresholds, source: str) -> Reading:
    """One reading from per-GPU samples: any GPU above a threshold makes the host active."""
    memory_limit = limits.memory_mib if limits.memory_mib is not None else float("inf")
    busy = [s for s in samples if s.util_percent >= limits.util_percent or s.memory_used_mib >= memory_limit]
    values: dict[str, Any] = {"source": source, "gpus": [asdict(s) for s in samples]}
    summary = ", ".join(f"GPU{s.index} {s.util_percent:.0f}% / {s.memory_used_mib:.0f} MiB" for s in samples)
    if busy:
        return Reading("gpu", "active", f"GPU busy ({source}): {summary}", values)
    return Reading("gpu", "idle", f"GPU idle below {limits.util_percent:g}% ({source}): {summary}", values)


class NvmlGpus:
    """NVML, initialised once; `None` from `read()` when no driver or GPU is present."""

    def __init__(self) -> None:
        self._ready: bool | None = None

    def read(self) -> list[GpuSample] | None:
        import pynvml

        if self._ready is None:
            try:
                pynvml.nvmlInit()
                self._ready = pynvml.nvmlDeviceGetCount() > 0
            except pynvml.NVMLError as exc:
                log.debug("NVML not available: %s", exc)
                self._ready = False
        if not self._ready:
            return None
        samples = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            util = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
            used = pynvml.nvmlDeviceGetMemoryInfo(handle).used / 1024 / 1024
            model = pynvml.nvmlDeviceGetName(handle)
            model = model.decode() if isinstance(model, bytes) else model
            samples.append(GpuSample(index, float(util), float(used), model))
        return samples


def latest_telemetry(
    conn: psycopg.Connection, host: str, window: timedelta
) -> tuple[datetime, list[GpuSample]] | None:
    """When `host`'s GPUs last reported (from the `gpus` registry) and each GPU's newest sample within `window`.

    None when the telemetry tables are absent or the host never reported a GPU.
    """
    if not conn.execute("SELECT to_regclass('gpus') IS NOT NULL AS p").fetchone()["p"]:
        return None
    gpus = conn.execute("SELECT gpu_uuid, last_seen FROM gpus WHERE host = %s", (host,)).fetchall()
    if not gpus:
        return None
    rows = conn.execute(
        """SELECT DISTINCT ON (gpu_uuid) gpu_index, gpu_util, fb_used FROM gpu_metrics
           WHERE gpu_uuid = ANY(%s) AND time > now() - %s ORDER BY gpu_uuid, time DESC""",
        ([g["gpu_uuid"] for g in gpus], window),
    ).fetchall()
    samples = [GpuSample(r["gpu_index"], float(r["gpu_util"] or 0), float(r["fb_used"] or 0)) for r in rows]
    return max(g["last_seen"] for g in gpus), sorted(samples, key=lambda g: g.index)


class GpuSignal:
    name = "gpu"

    def __init__(
        self,
        limits: GpuThresholds,
        host: str,
        database_url: str | None = None,
        stale_after: timedelta = timedelta(minutes=5),
        use_nvml: bool = True,
    ) -> None:
        self.limits, self.host, self.database_url, self.stale_after = limits, host, database_url, stale_after
        self.nvml = NvmlGpus() if use_nvml else None

    def sample(self) -> Reading:
        samples = self.nvml.read() if self.nvml else None
        if samples is not None:
            return judge(samples, self.limits, "NVML")
        if not self.database_url:
            return Reading(self.name, "n/a", "no NVIDIA driver or GPU on this host")
        try:
            with psycopg.connect(self.database_url, row_factory=psycopg.rows.dict_row, connect_timeout=5) as conn:
                latest = latest_telemetry(conn, self.host, self.stale_after)
        except psycopg.Error as exc:
            return Reading(self.name, "unknown", f"GPU telemetry could not be read ({type(exc).__name__})")
        if latest is None:
            return Reading(self.name, "n/a", f"no NVIDIA driver here and no GPU telemetry for host {self.host}")
        newest, samples = latest
        age = datetime.now(UTC) - newest
        if age > self.stale_after or not samples:
            return Reading(
                self.name, "unknown", f"GPU telemetry for {self.host} is stale ({age.total_seconds():.0f} s old)",
                {"source": "telemetry", "newest": newest.isoformat()},
            )
        return judge(samples, self.limits, "telemetry")
