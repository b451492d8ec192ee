"""The NVML adapter (`backend/nvml.py`) and the telemetry collector on it, against a fake pynvml.

The real library without a driver is exercised in tests/test_telemetry_collectors_sources.py; a real GPU in the
`gpu`-marked tests.
"""

from __future__ import annotations

from pathlib import Path

import pynvml
import pytest

import backend.nvml
from backend.nvml import NA, Nvml, NvmlUnavailable
from backend.telemetry.collectors.nvml import NvmlCollector
from backend.vm.compute import LocalHost
from tests.fakes.nvml import FakeGpu, FakeNvml

BACKEND = Path(__file__).resolve().parents[1] / "backend"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    nvml = FakeNvml()
    monkeypatch.setattr(backend.nvml, "pynvml", nvml.module)
    return nvml


def test_only_the_adapter_imports_pynvml() -> None:
    """One adapter for one external system: the collector, the agent and the VM view all read GPUs through it."""
    importers = sorted(str(p.relative_to(BACKEND)) for p in BACKEND.rglob("*.py")
                       if "import pynvml" in p.read_text() or "from pynvml" in p.read_text())
    assert importers == ["nvml.py"]


def test_unsupported_readings_are_not_available_never_zero(fake: FakeNvml) -> None:
    fake.gpus = [FakeGpu(util=37, memory_used_mib=2048, failing={
        "nvmlDeviceGetUtilizationRates": pynvml.NVML_ERROR_NOT_SUPPORTED})]
    (device,) = Nvml().devices()
    assert device.utilization_rates() is NA and device.memory_info().used == 2048 * 1024 * 1024
    metrics = device.metrics()
    assert "gpu_util" not in metrics and "mem_copy_util" not in metrics
    assert metrics["fb_used"] == 2048 and metrics["gpu_temp"] == 41
    assert "power_usage" not in metrics  # unscripted in the fake: NotSupported


def test_collector_samples_leave_unsupported_fields_out(fake: FakeNvml) -> None:
    fake.gpus = [FakeGpu(util=12, uuid="GPU-1", failing={"nvmlDeviceGetMemoryInfo": pynvml.NVML_ERROR_NOT_SUPPORTED}),
                 FakeGpu(util=0, uuid="GPU-2")]
    collector = NvmlCollector()
    try:
        first, second = collector.samples()
    finally:
        collector.close()
    assert collector.driver == "550.54.15" and fake.initialised == 0
    assert first.metrics["gpu_util"] == 12 and "fb_used" not in first.metrics and "fb_free" not in first.metrics
    assert second.metrics["gpu_util"] == 0 and second.metrics["fb_used"] == 0  # a real zero stays a zero
    assert first.labels == {"device": "nvidia0", "pci_bus_id": "00000000:04:00.0"}


def test_collector_init_errors_are_one_line_and_say_what_failed(fake: FakeNvml) -> None:
    fake.init_errors = [pynvml.NVML_ERROR_DRIVER_NOT_LOADED, pynvml.NVML_ERROR_NO_PERMISSION]
    not_loaded = r"^NVIDIA driver not found: NVML could not be loaded \(Driver Not Loaded\)$"
    with pytest.raises(NvmlUnavailable, match=not_loaded):
        NvmlCollector()
    with pytest.raises(NvmlUnavailable, match=r"^NVML failed to initialise \(Insufficient Permissions\)$") as caught:
        NvmlCollector()
    assert not caught.value.absent
    fake.count_errors = [pynvml.NVML_ERROR_UNKNOWN]
    with pytest.raises(NvmlUnavailable, match=r"^NVML is loaded but cannot enumerate the GPUs \(Unknown Error\)$"):
        NvmlCollector()
    assert fake.initialised == 0  # shut down again, ready for a retry
    fake.gpus = [FakeGpu()]
    assert len(NvmlCollector().devices) == 1


def test_hardware_evidence_reads_device_nodes_and_the_pci_bus(tmp_path: Path) -> None:
    dev, pci = tmp_path / "dev", tmp_path / "pci"
    dev.mkdir()
    for node in ("nvidiactl", "nvidia-uvm", "nvidia1"):  # only nvidiaN is a GPU; the others exist without one
        (dev / node).touch()
    cards = [("0000:00:04.0", "0x10de", "0x030200"), ("0000:00:05.0", "0x1af4", "0x020000"),
             ("0000:00:06.0", "0x10de", "0x040300")]  # an NVIDIA 3D controller, a virtio NIC, NVIDIA HD audio
    for address, vendor, device_class in cards:
        (pci / address).mkdir(parents=True)
        (pci / address / "vendor").write_text(vendor + "\n")
        (pci / address / "class").write_text(device_class + "\n")
    assert backend.nvml.hardware_evidence(dev, pci) == [str(dev / "nvidia1"), "NVIDIA PCI device 0000:00:04.0"]
    assert backend.nvml.hardware_evidence(tmp_path / "none", tmp_path / "none") == []


def test_the_local_vm_view_lists_gpu_models_through_the_adapter(fake: FakeNvml) -> None:
    fake.gpus = [FakeGpu(uuid="GPU-1"), FakeGpu(uuid="GPU-2")]
    (me,) = LocalHost().list()
    assert me.gpus == ["2 × NVIDIA H100 80GB HBM3"] and fake.initialised == 0
    fake.init_errors = [pynvml.NVML_ERROR_LIBRARY_NOT_FOUND]
    assert LocalHost().list()[0].gpus == []
