"""Host signals against real sources: this machine's /proc and utmp, and GPU telemetry rows in PostgreSQL.

The GPU signal's NVML side runs against a fake pynvml in tests/test_vm_gpu_nvml.py.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from backend.config import Settings
from backend.telemetry.sink.partitions import ensure_partitions
from backend.vm.signals import Reading, sample_all
from backend.vm.signals.cpu import CpuSignal
from backend.vm.signals.gpu import GpuReading, GpuSignal, GpuThresholds, judge
from backend.vm.signals.network import NetworkSignal
from backend.vm.signals.ssh import UTMP, SshSignal


def add_gpu(db: psycopg.Connection, host: str, uuid: str, index: int, util: float | None, used: float | None,
            ago: timedelta) -> None:
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


def signal(settings: Settings, host: str, memory_mib: float | None = None, booted: timedelta = timedelta(hours=1),
           ) -> GpuSignal:
    """Telemetry only, on a machine that booted `booted` ago."""
    return GpuSignal(GpuThresholds(5.0, memory_mib), host, settings.database_url, use_nvml=False,
                     booted_at=lambda: datetime.now(UTC) - booted)


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


def test_gpu_telemetry_without_utilization_or_memory_is_unknown(settings: Settings, db: psycopg.Connection) -> None:
    """NVML NotSupported (e.g. MIG) leaves gpu_util / fb_used NULL: that is not 0 %."""
    add_gpu(db, "mig-host", "MIG-0", 0, util=None, used=4_000, ago=timedelta(seconds=20))
    reading = signal(settings, "mig-host").sample()
    assert reading.state == "unknown" and "GPU0" in reading.evidence and "?%" in reading.evidence
    add_gpu(db, "nofb-host", "GPU-nofb", 0, util=0.0, used=None, ago=timedelta(seconds=20))
    assert signal(settings, "nofb-host").sample().state == "unknown"
    add_gpu(db, "nofb-host", "GPU-busy", 1, util=90.0, used=100, ago=timedelta(seconds=20))
    assert signal(settings, "nofb-host").sample().state == "active"  # a busy GPU is certain whatever the other says


def test_a_silent_gpu_beside_a_fresh_one_is_unknown(settings: Settings, db: psycopg.Connection) -> None:
    add_gpu(db, "half-host", "GPU-h0", 0, util=0.0, used=0, ago=timedelta(seconds=20))
    add_gpu(db, "half-host", "GPU-h1", 1, util=0.0, used=0, ago=timedelta(minutes=10))
    reading = signal(settings, "half-host").sample()
    assert reading.state == "unknown" and "no recent sample from GPU1" in reading.evidence
    # a GPU last seen before this boot belongs to an earlier life of the machine (e.g. a smaller machine type)
    assert signal(settings, "half-host", booted=timedelta(minutes=5)).sample().state == "idle"
    fresh_boot = signal(settings, "half-host", booted=timedelta(seconds=5)).sample()
    assert fresh_boot.state == "unknown" and "since this boot" in fresh_boot.evidence


def test_gpu_without_driver_or_database_is_not_applicable() -> None:
    reading = GpuSignal(GpuThresholds(), "h", None, use_nvml=False).sample()
    assert reading == Reading("gpu", "n/a", "no GPU on this host; NVML not used")
    busy = judge([GpuReading(0, 40.0, 100.0)], GpuThresholds(), "NVML")
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
    expected = ("active" if psutil.users() else "idle") if os.access(UTMP, os.R_OK) else "unknown"
    assert reading.state == expected


def test_missing_or_unreadable_utmp_is_unknown(tmp_path: Path) -> None:
    """psutil reads both as "nobody is logged in"; the signal must not."""
    missing = SshSignal(tmp_path / "utmp").sample()
    assert missing.state == "unknown" and missing.evidence.endswith("utmp: No such file or directory)")
    (tmp_path / "dir").mkdir()  # what a bind mount of an absent host file leaves in a container
    assert SshSignal(tmp_path / "dir").sample().state == "unknown"
    (tmp_path / "utmp").write_bytes(b"")
    assert SshSignal(tmp_path / "utmp").sample().state in ("idle", "active")


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
        assert reading.state == "n/a" and "NVIDIA driver not found" in reading.evidence
        return
    assert reading.state in ("idle", "active") and reading.values["source"] == "NVML"
    assert len(reading.values["gpus"]) == count
    assert all(0 <= g["util_percent"] <= 100 and g["memory_used_mib"] >= 0 for g in reading.values["gpus"])
