"""Local GPUs through NVML (PyPI `nvidia-ml-py`): one `Device` facade, in the spirit of nvitop.

Each reading that the GPU or driver does not support (`NVMLError_NotSupported`, …) is left out of the sample
instead of being reported as zero, so readers can tell "0 errors" from "cannot know". XID errors are NVML events,
not readings: they are not collected here (dcgm-exporter reports them).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pynvml

from backend.errors import Unavailable
from backend.telemetry.messages import GpuSample

log = logging.getLogger(__name__)
MIB = 1024 * 1024


class NvmlUnavailable(Unavailable):
    """No NVIDIA driver (or NVML library) on this machine."""


# NVML field-value ids read in one call, by the column they fill.
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


def _optional(read: Callable[[], Any]) -> Any:
    """A reading, or None when this GPU/driver cannot provide it."""
    try:
        return read()
    except pynvml.NVMLError as exc:
        log.debug("NVML reading unavailable: %s", exc)
        return None


class Device:
    """One GPU: identity plus a `sample()` of every reading it supports."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self.uuid: str = pynvml.nvmlDeviceGetUUID(self.handle)
        self.name: str = pynvml.nvmlDeviceGetName(self.handle)
        self.pci_bus_id: str | None = _optional(lambda: pynvml.nvmlDeviceGetPciInfo(self.handle).busId)

    def metrics(self) -> dict[str, int | float]:
        h = self.handle
        readings: dict[str, Any] = {
            "gpu_temp": _optional(lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)),
            "power_usage": _optional(lambda: pynvml.nvmlDeviceGetPowerUsage(h) / 1000),
            "total_energy_consumption": _optional(lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(h)),
            "sm_clock": _optional(lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)),
            "mem_clock": _optional(lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM)),
            "enc_util": _optional(lambda: pynvml.nvmlDeviceGetEncoderUtilization(h)[0]),
            "dec_util": _optional(lambda: pynvml.nvmlDeviceGetDecoderUtilization(h)[0]),
            # drivers before 535 only know the older name of the same bitmask
            "clocks_event_reasons": _optional(lambda: pynvml.nvmlDeviceGetCurrentClocksEventReasons(h))
            or _optional(lambda: pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(h)),
            "power_violation": _optional(lambda: self._violation_us(pynvml.NVML_PERF_POLICY_POWER)),
            "thermal_violation": _optional(lambda: self._violation_us(pynvml.NVML_PERF_POLICY_THERMAL)),
        }
        utilization = _optional(lambda: pynvml.nvmlDeviceGetUtilizationRates(h))
        if utilization is not None:
            readings |= {"gpu_util": utilization.gpu, "mem_copy_util": utilization.memory}
        memory = _optional(lambda: pynvml.nvmlDeviceGetMemoryInfo(h))
        if memory is not None:
            readings |= {"fb_used": memory.used / MIB, "fb_free": memory.free / MIB}
        readings |= self._field_values()
        return {k: v for k, v in readings.items() if v is not None}

    def _violation_us(self, policy: int) -> int:
        """Throttled time: NVML counts nanoseconds, DCGM (and our column) microseconds."""
        return pynvml.nvmlDeviceGetViolationStatus(self.handle, policy).violationTime // 1000

    def _field_values(self) -> dict[str, int | float]:
        values = _optional(lambda: pynvml.nvmlDeviceGetFieldValues(self.handle, list(_FIELD_IDS.values())))
        if values is None:
            return {}
        out: dict[str, int | float] = {}
        for column, value in zip(_FIELD_IDS, values, strict=True):
            member = _VALUE_MEMBER.get(value.valueType)
            if value.nvmlReturn == pynvml.NVML_SUCCESS and member:
                out[column] = getattr(value.value, member)
        return out


class NvmlCollector:
    """Samples every local GPU. Construct it to find out at once whether NVML is usable."""

    def __init__(self) -> None:
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise NvmlUnavailable(f"NVIDIA driver not found: NVML could not be loaded ({exc})") from None
        try:
            self.driver: str = pynvml.nvmlSystemGetDriverVersion()
            self.devices = [Device(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except pynvml.NVMLError as exc:
            pynvml.nvmlShutdown()
            raise NvmlUnavailable(f"NVML is loaded but cannot enumerate the GPUs ({exc})") from None
        self.host = socket.gethostname()

    def sample(self) -> Iterator[GpuSample]:
        """One sample per GPU, all stamped with the same instant."""
        now = datetime.now(UTC)
        for device in self.devices:
            metrics = device.metrics()
            if not metrics:  # e.g. the GPU fell off the bus: nothing is readable any more
                log.warning("GPU %d (%s) returned no readings", device.index, device.uuid)
                continue
            labels = {"device": f"nvidia{device.index}"}
            if device.pci_bus_id:
                labels["pci_bus_id"] = device.pci_bus_id
            yield GpuSample(ts=now, host=self.host, gpu_index=device.index, gpu_uuid=device.uuid,
                            model=device.name, driver=self.driver, source="nvml", labels=labels, metrics=metrics)

    def close(self) -> None:
        pynvml.nvmlShutdown()
