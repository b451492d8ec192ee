"""Host signals against real sources: this machine's /proc and utmp, and GPU telemetry rows in PostgreSQL."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from backend.config import Settings
from backend.telemetry.sink.partitions import ensure_partitions
from backend.vm.signals import Reading, sample_all
from backend.vm.signals.cpu import CpuSignal
from backend.vm.signals.gpu import GpuSample, GpuSignal, GpuThresholds, judge
from backend.vm.signals.network import NetworkSignal
from backend.vm.signals.ssh import SshSignal


def add_gpu(db: psycopg.Connection, host: str, uuid: str, index: int, util: float, used: float, ago: timedelta) -> None:
    at = datetime.now(UTC) - ago
    ensure_partitions(db, {at.date(), datetime.now(UTC).date()})
    db.execute(
        """INSERT INTO gpus (gpu_uuid, host, gpu_index, model, first_seen, last_seen)
           VALUES (%s, %s, %s, 'NVIDIA L4', %s, %s)
           ON CONFLICT (gpu_uuid) DO UPDATE SET last_seen = EXCLUDED.last_seen""",
        (uuid, host, index, at, at),
    )
    db.execute(
        "INSERT INTO gpu_metrics (time, gpu_uuid, host, gpu_index, gpu_util, fb_used) VALUES (%s, %s, %s, %s, %s, %s)",
        (at, uuid, host, index, util, used),
    )


def signal(settings: Settings, host: str, memory_mib: float | None = None) -> GpuSignal:
    return GpuSignal(GpuThresholds(5.0, memory_mib), host, settings.database_url, use_nvml=False)


def test_gpu_from_telemetry_rows(settings: Settings, db: psycopg.Connection) -> None:
    assert signal(settings, "no-gpu-host").sample().state == "n/a"
    add_gpu(db, "gpu-host", "GPU-0", 0, util=1.0, used=30_000, ago=timedelta(seconds=20))
    add_gpu(db, "gpu-host", "GPU-1", 1, util=0.0, used=500, ago=timedelta(seconds=20))
    idle = signal(settings, "gpu-host").sample()
    assert idle.state == "idle" and idle.values["source"] == "telemetry"
    assert idle.evidence == "GPU idle below 5% (telemetry): GPU0 1% / 30000 MiB, GPU1 0% / 500 MiB"
    assert signal(settings, "gpu-host", memory_mib=20_000).sample().state == "active"  # a loaded model counts
    add_gpu(db, "gpu-host", "GPU-1", 1, util=85.0, used=500, ago=timedelta(seconds=5))
    assert signal(settings, "gpu-host").sample().state == "active"


def test_silent_gpu_telemetry_is_unknown(settings: Settings, db: psycopg.Connection) -> None:
    add_gpu(db, "quiet-host", "GPU-q", 0, util=0.0, used=0, ago=timedelta(minutes=30))
    reading = signal(settings, "quiet-host").sample()
    assert reading.state == "unknown" and reading.blocks and "stale" in reading.evidence


def test_gpu_without_driver_or_database_is_not_applicable() -> None:
    reading = GpuSignal(GpuThresholds(), "h", None, use_nvml=False).sample()
    assert reading == Reading("gpu", "n/a", "no NVIDIA driver or GPU on this host")
    busy = judge([GpuSample(0, 40.0, 100.0)], GpuThresholds(), "NVML")
    assert busy.state == "active"


def test_cpu_and_network_measure_real_rates() -> None:
    cpu = CpuSignal(busy_percent=101, first_window=0.2)
    first = cpu.sample()
    assert first.state == "idle" and 0 <= first.values["busy_percent"] <= 100 and first.values["over_seconds"] >= 0.2
    busy_until = datetime.now(UTC) + timedelta(seconds=0.5)
    while datetime.now(UTC) < busy_until:
        pass
    second = CpuSignal(busy_percent=0, first_window=0.2).sample()
    assert second.state == "active"
    network = NetworkSignal(active_kib_per_s=1e12, first_window=0.2).sample()
    assert network.state in ("idle", "n/a") and network.values["kib_per_s"] >= 0


def test_ssh_sessions_match_utmp() -> None:
    import psutil

    reading = SshSignal().sample()
    expected = "active" if psutil.users() else "idle"
    assert reading.state == expected


class Broken:
    name = "broken"

    def sample(self) -> Reading:
        raise RuntimeError(f"boom in {os.getpid()}")


def test_a_signal_that_raises_reads_unknown() -> None:
    (reading,) = sample_all([Broken()])
    assert reading == Reading("broken", "unknown", "broken could not be read: RuntimeError")


@pytest.mark.gpu
def test_gpu_signal_reads_nvml_when_a_driver_is_present() -> None:
    """On the GPU machine this reads real GPUs through NVML; elsewhere the missing driver must read n/a."""
    import pynvml

    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except pynvml.NVMLError:
        count = 0
    reading = GpuSignal(GpuThresholds(), "this-host").sample()
    if count == 0:
        assert reading == Reading("gpu", "n/a", "no NVIDIA driver or GPU on this host")
        return
    assert reading.state in ("idle", "active") and reading.values["source"] == "NVML"
    assert len(reading.values["gpus"]) == count
    assert all(0 <= g["util_percent"] <= 100 and g["memory_used_mib"] >= 0 for g in reading.values["gpus"])
