"""Faults the simulator injects, and the schedule that says when each one starts and turns critical.

The schedule is the ground truth for anyone training or testing on simulated fleets: the health engineer labels a
sample "critical fault within the next H hours" with `FaultSchedule.critical_within`. Timelines (offsets from a
fault's onset) are fixed per kind and documented in docs/telemetry.md:

| kind          | from onset                                              | critical at            |
| ------------- | ------------------------------------------------------- | ---------------------- |
| thermal       | temperature climbs towards 96 °C (HBM ~102 °C), thermal throttling from 87 °C | onset + 3 h |
| ecc           | single-bit ECC errors grow exponentially, rows remapped | onset + 6 h: DBE, XID 48 |
| xid79         | PCIe replays grow                                        | onset + 45 min: XID 79, then no samples |
| power_brake   | HW power brake (0x80 | 0x8), power_violation grows, clocks drop; ends after 90 min | never (warning) |
| nvlink        | NVLink CRC flit errors grow from 0.5/s to 5/s            | onset + 2 h: replay and recovery errors |
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Literal

from backend.errors import InvalidInput
from backend.parsing import parse_duration

FaultKind = Literal["thermal", "ecc", "xid79", "power_brake", "nvlink"]
KINDS: tuple[FaultKind, ...] = ("thermal", "ecc", "xid79", "power_brake", "nvlink")

# (time from onset to critical, time from onset to end); None: never critical / never ends.
TIMELINE: dict[str, tuple[timedelta | None, timedelta | None]] = {
    "thermal": (timedelta(hours=3), None),
    "ecc": (timedelta(hours=6), None),
    "xid79": (timedelta(minutes=45), None),
    "power_brake": (None, timedelta(minutes=90)),
    "nvlink": (timedelta(hours=2), None),
}
DESCRIPTIONS: dict[str, str] = {
    "thermal": "thermal runaway (cooling failure): temperature climbs to 96 °C with thermal slowdown",
    "ecc": "memory degradation: single-bit ECC errors grow, then a double-bit error (XID 48)",
    "xid79": "PCIe link degrades, then the GPU falls off the bus (XID 79) and stops reporting",
    "power_brake": "external power brake: HW slowdown 0x80, clocks and power drop for 90 minutes",
    "nvlink": "NVLink link degrades: CRC flit errors grow, then replay and recovery errors",
}

_SPEC = re.compile(r"(?P<kind>[a-z_0-9]+)(?::(?P<target>[^@]+))?(?:@(?P<onset>.+))?")


@dataclass(frozen=True)
class FaultSpec:
    """A request to inject a fault: which kind, on which GPU (`host/index` or fleet ordinal; None: seeded pick),
    starting how long after the fleet's start (None: a seeded time between 1 h and 12 h)."""

    kind: FaultKind
    target: str | None = None
    onset: timedelta | None = None

    @classmethod
    def parse(cls, text: str) -> FaultSpec:
        """`KIND[:HOST/INDEX|:ORDINAL][@OFFSET]`, e.g. `ecc`, `xid79@2h`, `thermal:gpu-node-01/3@30m`."""
        match = _SPEC.fullmatch(text.strip())
        if not match or match["kind"] not in KINDS:
            raise InvalidInput(f"fault {text!r} is not KIND[:HOST/INDEX][@OFFSET] with KIND one of {', '.join(KINDS)}")
        onset = (parse_duration(match["onset"], what="fault onset", allow_zero=True, bare_seconds=True)
                 if match["onset"] else None)
        return cls(match["kind"], match["target"], onset)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FaultEvent:
    """One injected fault on one GPU, with absolute times."""

    kind: FaultKind
    gpu_uuid: str
    host: str
    gpu_index: int
    onset: datetime
    critical_at: datetime | None
    ends: datetime | None
    description: str

    @property
    def severity(self) -> Literal["critical", "warning"]:
        return "critical" if self.critical_at is not None else "warning"

    def active(self, at: datetime) -> bool:
        return self.onset <= at and (self.ends is None or at < self.ends)

    @classmethod
    def at(cls, kind: FaultKind, gpu_uuid: str, host: str, gpu_index: int, onset: datetime) -> FaultEvent:
        to_critical, to_end = TIMELINE[kind]
        return cls(kind, gpu_uuid, host, gpu_index, onset,
                   onset + to_critical if to_critical else None, onset + to_end if to_end else None,
                   DESCRIPTIONS[kind])


class FaultSchedule:
    """All injected faults of a fleet, queryable per GPU and time."""

    def __init__(self, events: Iterable[FaultEvent]) -> None:
        self.events: tuple[FaultEvent, ...] = tuple(sorted(events, key=lambda e: (e.onset, e.gpu_uuid)))

    def __iter__(self):
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def for_gpu(self, gpu_uuid: str) -> list[FaultEvent]:
        return [e for e in self.events if e.gpu_uuid == gpu_uuid]

    def first_critical(self, gpu_uuid: str) -> datetime | None:
        """When this GPU first turns critical, if ever."""
        times = [e.critical_at for e in self.for_gpu(gpu_uuid) if e.critical_at is not None]
        return min(times, default=None)

    def critical_within(self, gpu_uuid: str, at: datetime, horizon: timedelta) -> bool:
        """The training label: does a critical fault begin on this GPU in (at, at + horizon]?"""
        return any(e.critical_at is not None and at < e.critical_at <= at + horizon for e in self.for_gpu(gpu_uuid))

    def failed(self, gpu_uuid: str, at: datetime) -> bool:
        """Has this GPU already turned critical at `at`?"""
        first = self.first_critical(gpu_uuid)
        return first is not None and first <= at

    def active(self, gpu_uuid: str, at: datetime) -> list[FaultEvent]:
        return [e for e in self.for_gpu(gpu_uuid) if e.active(at)]

    def as_dicts(self) -> list[dict]:
        return [asdict(e) | {"severity": e.severity} for e in self.events]
