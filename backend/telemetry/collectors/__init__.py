"""Sources of telemetry: NVML, dcgm-exporter scrapes, DCGM CSV replay and simulated token usage.

Each collector only turns its source into `backend.telemetry.messages` structs through one method, `samples()`
(the `Collector` protocol); `backend.telemetry.producer` puts them on Kafka.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from backend.telemetry.messages import Message


class Collector(Protocol):
    """What every source offers `pipeline produce`. A live source (`NvmlCollector`, `DcgmScraper`) gives one read
    per call and is polled; a recorded or simulated one (`CsvReplay`, the simulator's `Fleet`) yields its stream."""

    def samples(self) -> Iterable[Message]: ...


class LiveCollector(Collector, Protocol):
    """A source that holds a device or a connection between reads: `close()` lets go of it."""

    def close(self) -> None: ...
