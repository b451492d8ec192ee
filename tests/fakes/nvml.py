"""A fake `pynvml` (nvidia-ml-py) for machines without a GPU: the real error classes and constants, scripted GPUs.

Put it where the NVML adapter imports the library: `monkeypatch.setattr(backend.nvml, "pynvml", fake.module)`.
Errors are raised the way the real binding raises them (`NVMLError(code)` becomes its `NVMLError_*` subclass);
any NVML function the fake does not script raises `NVMLError_NotSupported`, like a reading an old GPU lacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType, SimpleNamespace
from typing import Any

import pynvml as real

MIB = 1024 * 1024


@dataclass
class FakeGpu:
    util: int = 0
    memory_used_mib: float = 0.0
    memory_total_mib: float = 81_559.0
    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    failing: dict[str, int] = field(default_factory=dict)
    """NVML function name → error code it raises on this GPU (e.g. NotSupported for utilization under MIG)."""


@dataclass
class FakeNvml:
    gpus: list[FakeGpu] = field(default_factory=list)
    init_errors: list[int] = field(default_factory=list)
    """Error codes the next `nvmlInit` calls raise, one per call; then init succeeds."""
    count_errors: list[int | Exception] = field(default_factory=list)
    """What the next `nvmlDeviceGetCount` calls raise, one per call: an NVML error code, or any exception (a crash
    inside the binding)."""
    driver: str = "550.54.15"
    initialised: int = 0
    calls: list[str] = field(default_factory=list)

    @property
    def module(self) -> ModuleType:
        """A module with pynvml's constants and error classes and this fake's functions."""
        fake = ModuleType("pynvml")
        fake.__dict__.update({k: v for k, v in vars(real).items() if not callable(v) or isinstance(v, type)})
        for name in dir(self):
            if name.startswith("nvml"):
                setattr(fake, name, getattr(self, name))
        fake.__dict__["__getattr__"] = self._unscripted
        return fake

    def _unscripted(self, name: str) -> Any:
        if not name.startswith("nvml"):
            raise AttributeError(name)

        def not_supported(*args: Any) -> Any:
            self._require_init(name)
            raise real.NVMLError(real.NVML_ERROR_NOT_SUPPORTED)

        return not_supported

    def _require_init(self, call: str) -> None:
        self.calls.append(call)
        if not self.initialised:
            raise real.NVMLError(real.NVML_ERROR_UNINITIALIZED)

    def _gpu(self, call: str, handle: int) -> FakeGpu:
        self._require_init(call)
        gpu = self.gpus[handle]
        if call in gpu.failing:
            raise real.NVMLError(gpu.failing[call])
        return gpu

    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")
        if self.init_errors:
            raise real.NVMLError(self.init_errors.pop(0))
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._require_init("nvmlShutdown")
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._require_init("nvmlSystemGetDriverVersion")
        return self.driver

    def nvmlDeviceGetCount(self) -> int:
        self._require_init("nvmlDeviceGetCount")
        if self.count_errors:
            error = self.count_errors.pop(0)
            raise error if isinstance(error, Exception) else real.NVMLError(error)
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._require_init("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise real.NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return self._gpu("nvmlDeviceGetUUID", handle).uuid

    def nvmlDeviceGetName(self, handle: int) -> str:
        return self._gpu("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetPciInfo(self, handle: int) -> SimpleNamespace:
        self._gpu("nvmlDeviceGetPciInfo", handle)
        return SimpleNamespace(busId=f"00000000:{handle + 4:02X}:00.0")

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        gpu = self._gpu("nvmlDeviceGetUtilizationRates", handle)
        return SimpleNamespace(gpu=gpu.util, memory=gpu.util // 2)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:
        gpu = self._gpu("nvmlDeviceGetMemoryInfo", handle)
        used, total = int(gpu.memory_used_mib * MIB), int(gpu.memory_total_mib * MIB)
        return SimpleNamespace(used=used, free=total - used, total=total)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        self._gpu("nvmlDeviceGetTemperature", handle)
        return 41
