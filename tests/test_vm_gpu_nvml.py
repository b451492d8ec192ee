"""The GPU signal's NVML side, against a fake pynvml put where the NVML adapter imports the library.

No NVML can run here (no GPU); `tests/fakes/nvml.py` raises the real binding's error classes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import pynvml
import pytest

import backend.nvml
from backend.config import Settings
from backend.nvml import hardware_evidence
from backend.vm.agent import build_signals
from backend.vm.signals.gpu import GpuSignal, GpuThresholds
from tests.fakes.nvml import FakeGpu, FakeNvml


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    nvml = FakeNvml()
    monkeypatch.setattr(backend.nvml, "pynvml", nvml.module)
    return nvml


def no_hardware(tmp_path: Path) -> Callable[[], list[str]]:
    """A machine whose /dev and PCI bus show no NVIDIA device."""
    (tmp_path / "dev").mkdir(exist_ok=True)
    (tmp_path / "pci").mkdir(exist_ok=True)
    return functools.partial(hardware_evidence, dev=tmp_path / "dev", pci=tmp_path / "pci")


def gpu_signal(hardware: Callable[[], list[str]], **kwargs: object) -> GpuSignal:
    return GpuSignal(GpuThresholds(util_percent=5.0), "vm-1", None, hardware=hardware, **kwargs)  # type: ignore[arg-type]


def test_an_nvml_init_error_is_unknown_and_retried_at_every_poll(fake: FakeNvml, tmp_path: Path) -> None:
    fake.gpus = [FakeGpu(util=90)]
    fake.init_errors = [pynvml.NVML_ERROR_UNKNOWN, pynvml.NVML_ERROR_NO_PERMISSION]
    signal = gpu_signal(no_hardware(tmp_path))
    first = signal.sample()
    assert (first.state, first.evidence) == ("unknown", "NVML failed to initialise (Unknown Error); retrying at the "
                                                        "next poll")
    assert signal.sample().state == "unknown"
    recovered = signal.sample()
    assert recovered.state == "active" and recovered.values["source"] == "NVML"
    assert fake.calls.count("nvmlInit") == 3
    signal.sample()
    assert fake.calls.count("nvmlInit") == 3 and fake.initialised == 1  # initialised once it worked


def test_no_driver_is_not_applicable_only_without_nvidia_hardware(fake: FakeNvml, tmp_path: Path) -> None:
    fake.init_errors = [pynvml.NVML_ERROR_LIBRARY_NOT_FOUND] * 4
    absent = gpu_signal(no_hardware(tmp_path)).sample()
    assert absent.state == "n/a" and "NVIDIA driver not found" in absent.evidence
    (tmp_path / "dev" / "nvidia0").touch()
    on_gpu_host = gpu_signal(no_hardware(tmp_path)).sample()
    assert on_gpu_host.state == "unknown" and on_gpu_host.values["hardware"] == [str(tmp_path / "dev" / "nvidia0")]
    (tmp_path / "dev" / "nvidia0").unlink()
    card = tmp_path / "pci" / "0000:00:04.0"  # driver not installed: no device node, but the card is on the bus
    card.mkdir()
    (card / "vendor").write_text("0x10de\n")
    (card / "class").write_text("0x030200\n")
    assert gpu_signal(no_hardware(tmp_path)).sample().state == "unknown"
    (card / "class").write_text("0x040300\n")  # the card's audio function is not a GPU
    assert gpu_signal(no_hardware(tmp_path)).sample().state == "n/a"


def test_a_driver_that_is_not_loaded_on_a_gpu_host_is_unknown(fake: FakeNvml, tmp_path: Path) -> None:
    fake.init_errors = [pynvml.NVML_ERROR_DRIVER_NOT_LOADED]
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "nvidia0").touch()
    reading = gpu_signal(no_hardware(tmp_path)).sample()
    assert reading.state == "unknown" and "NVIDIA hardware" in reading.evidence


def test_a_configured_gpu_host_never_reads_not_applicable(fake: FakeNvml, tmp_path: Path) -> None:
    fake.init_errors = [pynvml.NVML_ERROR_LIBRARY_NOT_FOUND] * 2
    assert gpu_signal(no_hardware(tmp_path), expected=True).sample().state == "unknown"
    settings = Settings(autoshutdown_gpu_expected=True, database_url=None)
    (built,) = [s for s in build_signals(settings, "vm-1") if s.name == "gpu"]
    assert isinstance(built, GpuSignal) and built.expected
    assert built.sample().state == "unknown"  # this machine has no NVIDIA hardware; the setting alone decides


def test_nvml_without_utilization_or_memory_is_unknown_not_zero(fake: FakeNvml, tmp_path: Path) -> None:
    mig = {"nvmlDeviceGetUtilizationRates": pynvml.NVML_ERROR_NOT_SUPPORTED}
    fake.gpus = [FakeGpu(util=0, failing=mig, uuid="GPU-a"), FakeGpu(util=0, uuid="GPU-b")]
    signal = gpu_signal(no_hardware(tmp_path))
    reading = signal.sample()
    assert reading.state == "unknown" and "GPU0 utilization" in reading.evidence and "GPU0 ?%" in reading.evidence
    assert reading.values["gpus"][0]["util_percent"] is None and reading.values["gpus"][1]["util_percent"] == 0.0
    fake.gpus[0].failing = {"nvmlDeviceGetMemoryInfo": pynvml.NVML_ERROR_NOT_SUPPORTED}
    assert signal.sample().state == "unknown"
    fake.gpus[0].failing = {"nvmlDeviceGetUtilizationRates": pynvml.NVML_ERROR_GPU_IS_LOST}
    assert signal.sample().state == "unknown"
    fake.gpus[1].util = 70
    assert signal.sample().state == "active"  # one busy GPU is certain, whatever the other cannot say
    fake.gpus[0].failing, fake.gpus[1].util = {}, 0
    assert signal.sample().state == "idle"


def test_a_failed_enumeration_reinitialises_nvml_on_the_next_poll(fake: FakeNvml, tmp_path: Path) -> None:
    fake.gpus = [FakeGpu(util=0)]
    fake.count_errors = [pynvml.NVML_ERROR_UNKNOWN]
    signal = gpu_signal(no_hardware(tmp_path))
    failed = signal.sample()
    assert failed.state == "unknown" and "cannot enumerate the GPUs" in failed.evidence
    assert fake.initialised == 0 and "nvmlShutdown" in fake.calls
    assert signal.sample().state == "idle" and fake.calls.count("nvmlInit") == 2


def test_nvml_sees_no_gpu_on_nvidia_hardware(fake: FakeNvml, tmp_path: Path) -> None:
    hardware = no_hardware(tmp_path)
    assert gpu_signal(hardware).sample().state == "n/a"
    (tmp_path / "dev" / "nvidia0").touch()
    reading = gpu_signal(hardware).sample()
    assert reading.state == "unknown" and reading.evidence.startswith("NVML sees no GPU, but this host has")
