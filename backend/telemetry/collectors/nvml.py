"""Local GPUs through the NVML adapter (`backend/nvml.py`): one `GpuSample` per GPU per read.

Readings a GPU or driver does not support are left out of the sample instead of being reported as zero, so readers
can tell "0 errors" from "cannot know". XID errors are NVML events, not readings: they are not collected here
(dcgm-exporter reports them).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime

from backend.nvml import Nvml, NvmlUnavailable
from backend.telemetry.messages import GpuSample

__all__ = ["NvmlCollector", "NvmlUnavailable"]
log = logging.getLogger(__name__)


class NvmlCollector:
    """Samples every local GPU. Construct it to find out at once whether NVML is usable (`NvmlUnavailable`)."""

    def __init__(self) -> None:
        self.nvml = Nvml()
        self.devices = self.nvml.devices()
        self.driver = self.nvml.driver_version()
        self.host = socket.gethostname()

    def samples(self) -> Iterator[GpuSample]:
        """One read: a sample per GPU, all stamped with the same instant."""
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
        self.nvml.close()
