"""NVML (PyPI `nvidia-ml-py`), the one adapter for local NVIDIA GPUs: `Nvml` (the library) and `Device` (one GPU),
in the spirit of nvitop's facade. The telemetry collector and the auto-shutdown agent both read GPUs through it.

A reading the GPU or driver cannot give (`NVMLError_NotSupported`, e.g. utilization on a MIG-enabled GPU, or any
NVML error on that one reading) comes back as `NA`, never as zero, so callers can tell "0 %" from "cannot know".
`pynvml` is imported here and nowhere else; tests put a fake in its place (`backend.nvml.pynvml`).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import pynvml

from backend.errors import Unavailable

log = logging.getLogger(__name__)
MIB = 1024 * 1024
T = TypeVar("T")


class _NotAvailable(enum.Enum):
    NA = "N/A"


NA = _NotAvailable.NA
NotAvailable = Literal[_NotAvailable.NA]
"""The type of `NA`: `Device.utilization_rates()` is `Any | NotAvailable`."""

# No NVML library, or no kernel driver loaded: NVML is absent here rather than failing.
_ABSENT = frozenset({pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, pynvml.NVML_ERROR_DRIVER_NOT_LOADED})
_NVIDIA_PCI_VENDOR = "0x10de"


class NvmlUnavailable(Unavailable):
    """NVML cannot read this machine's GPUs. `absent`: no NVML library or no loaded driver (as opposed to an NVML
    that is there and failed), which on a machine without NVIDIA hardware simply means it has no GPU."""

    def __init__(self, message: str, *, absent: bool = False) -> None:
        super().__init__(message)
        self.absent = absent


def query(read: Callable[..., T], *args: Any) -> T | NotAvailable:
    """One NVML reading, or `NA` when this GPU or driver cannot give it."""
    try:
        return read(*args)
    except pynvml.NVMLError as exc:
        log.debug("NVML %s unavailable: %s", getattr(read, "__name__", "reading"), exc)
        return NA


def _text(value: str | bytes) -> str:
    """Old bindings return bytes."""
    return value.decode() if isinstance(value, bytes) else value


# NVML field-value ids read in one call, by the telemetry column they fill.
_FIELD_IDS: dict[str, int] = {
    "memory_temp": pynvml.NVML_FI_DEV_MEMORY_TEMP,
    "pcie_replay_counter": pynvml.NVML_FI_DEV_PCIE_REPLAY_COUNTER,
    "ecc_sbe_vol_total": pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL,
    "ecc_dbe_vol_total": pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL,
    "ecc_sbe_agg_total": pynvml.NVML_FI_DEV_ECC_SBE_AGG_TOTAL,
    "ecc_dbe_agg_total": pynvml.NVML_FI_DEV_ECC_DBE_AGG_TOTAL,
    "retired_pages_sbe": pynvml.NVML_FI_DEV_RETIRED_SBE,
    "retired_pages_dbe": pynvml.NVML_FI_DEV_RETIRED_DBE,
    "retired_pages_pending": pynvml.NVML_FI_DEV_RETIRED_PENDING,
    "correctable_remapped_rows": pynvml.NVML_FI_DEV_REMAPPED_COR,
    "uncorrectable_remapped_rows": pynvml.NVML_FI_DEV_REMAPPED_UNC,
    "row_remap_failure": pynvml.NVML_FI_DEV_REMAPPED_FAILURE,
    "nvlink_crc_flit_error_count_total": pynvml.NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL,
    "nvlink_replay_error_count_total": pynvml.NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL,
    "nvlink_recovery_error_count_total": pynvml.NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL,
}
_VALUE_MEMBER = {
    pynvml.NVML_VALUE_TYPE_DOUBLE: "dVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
    pynvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal",
    pynvml.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_SHORT: "usVal",
}


class Device:
    """One GPU: its identity, read once, and readings on demand, each a value or `NA`."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self.uuid = _text(pynvml.nvmlDeviceGetUUID(self.handle))
        self.name = _text(pynvml.nvmlDeviceGetName(self.handle))
        pci = query(pynvml.nvmlDeviceGetPciInfo, self.handle)
        self.pci_bus_id: str | None = None if pci is NA else _text(pci.busId)

    def utilization_rates(self) -> Any | NotAvailable:
        """Percent of the last sample period a kernel ran (`.gpu`) and memory was copied (`.memory`)."""
        return query(pynvml.nvmlDeviceGetUtilizationRates, self.handle)

    def memory_info(self) -> Any | NotAvailable:
        """Framebuffer bytes `.used`, `.free` and `.total`."""
        return query(pynvml.nvmlDeviceGetMemoryInfo, self.handle)

    def metrics(self) -> dict[str, int | float]:
        """Every reading this GPU supports, by telemetry column; unsupported ones are left out."""
        h = self.handle
        readings: dict[str, Any] = {
            "gpu_temp": query(pynvml.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU),
            "power_usage": query(pynvml.nvmlDeviceGetPowerUsage, h),
            "total_energy_consumption": query(pynvml.nvmlDeviceGetTotalEnergyConsumption, h),
            "sm_clock": query(pynvml.nvmlDeviceGetClockInfo, h, pynvml.NVML_CLOCK_SM),
            "mem_clock": query(pynvml.nvmlDeviceGetClockInfo, h, pynvml.NVML_CLOCK_MEM),
            "enc_util": query(lambda: pynvml.nvmlDeviceGetEncoderUtilization(h)[0]),
            "dec_util": query(lambda: pynvml.nvmlDeviceGetDecoderUtilization(h)[0]),
            "clocks_event_reasons": query(pynvml.nvmlDeviceGetCurrentClocksEventReasons, h),
            "power_violation": query(self._violation_us, pynvml.NVML_PERF_POLICY_POWER),
            "thermal_violation": query(self._violation_us, pynvml.NVML_PERF_POLICY_THERMAL),
        }
        if readings["power_usage"] is not NA:
            readings["power_usage"] /= 1000  # NVML reports milliwatts
        if readings["clocks_event_reasons"] is NA:  # drivers before 535 only know the older name of the bitmask
            readings["clocks_event_reasons"] = query(pynvml.nvmlDeviceGetCurrentClocksThrottleReasons, h)
        utilization = self.utilization_rates()
        if utilization is not NA:
            readings |= {"gpu_util": utilization.gpu, "mem_copy_util": utilization.memory}
        memory = self.memory_info()
        if memory is not NA:
            readings |= {"fb_used": memory.used / MIB, "fb_free": memory.free / MIB}
        readings |= self._field_values()
        return {k: v for k, v in readings.items() if v is not NA}

    def _violation_us(self, policy: int) -> int:
        """Throttled time: NVML counts nanoseconds, DCGM (and our column) microseconds."""
        return pynvml.nvmlDeviceGetViolationStatus(self.handle, policy).violationTime // 1000

    def _field_values(self) -> dict[str, int | float]:
        values = query(pynvml.nvmlDeviceGetFieldValues, self.handle, list(_FIELD_IDS.values()))
        if values is NA:
            return {}
        out: dict[str, int | float] = {}
        for column, value in zip(_FIELD_IDS, values, strict=True):
            member = _VALUE_MEMBER.get(value.valueType)
            if value.nvmlReturn == pynvml.NVML_SUCCESS and member:
                out[column] = getattr(value.value, member)
        return out


class Nvml:
    """NVML for this process. It initialises on first use and, after any failure, again on the next call: an
    error is never remembered as "no GPU" (a driver that was still loading at boot answers a minute later)."""

    def __init__(self) -> None:
        self._initialised = False

    def devices(self) -> list[Device]:
        """Every local GPU, enumerated afresh. Raises `NvmlUnavailable` when NVML cannot say."""
        if not self._initialised:
            try:
                pynvml.nvmlInit()
            except pynvml.NVMLError as exc:
                if exc.value in _ABSENT:
                    raise NvmlUnavailable(f"NVIDIA driver not found: NVML could not be loaded ({exc})",
                                          absent=True) from None
                raise NvmlUnavailable(f"NVML failed to initialise ({exc})") from None
            self._initialised = True
        try:
            return [Device(index) for index in range(pynvml.nvmlDeviceGetCount())]
        except pynvml.NVMLError as exc:
            self.close()
            raise NvmlUnavailable(f"NVML is loaded but cannot enumerate the GPUs ({exc})") from None

    def driver_version(self) -> str:
        """The kernel driver's version; call after `devices()`."""
        try:
            return _text(pynvml.nvmlSystemGetDriverVersion())
        except pynvml.NVMLError as exc:
            self.close()
            raise NvmlUnavailable(f"NVML is loaded but cannot read the driver version ({exc})") from None

    def close(self) -> None:
        if self._initialised:
            self._initialised = False
            query(pynvml.nvmlShutdown)


def hardware_evidence(dev: Path = Path("/dev"), pci: Path = Path("/sys/bus/pci/devices")) -> list[str]:
    """Signs of NVIDIA GPUs that need no NVML: their device nodes, or NVIDIA display controllers on the PCI bus
    (present even when the driver is missing or broken). Empty on a machine without NVIDIA hardware."""
    found = [str(node) for node in sorted(dev.glob("nvidia[0-9]*"))]
    for device in sorted(pci.glob("*")):
        try:
            vendor, device_class = (device / "vendor").read_text().strip(), (device / "class").read_text().strip()
        except OSError:
            continue
        if vendor == _NVIDIA_PCI_VENDOR and device_class.startswith("0x03"):
            found.append(f"NVIDIA PCI device {device.name}")
    return found
