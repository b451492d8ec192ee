"""CPU load: the busy share of all CPU time since the previous poll (from /proc/stat through psutil)."""

from __future__ import annotations

import os

import psutil

from backend.vm.signals.base import Rate, Reading


def _cpu_seconds() -> dict[str, float]:
    """Busy and total CPU seconds; guest time is already inside user time on Linux, so it is not added twice."""
    times = psutil.cpu_times()
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return {"busy": total - idle, "total": total}


class CpuSignal:
    name = "cpu"

    def __init__(self, busy_percent: float = 10.0, first_window: float = 1.0) -> None:
        self.busy_percent = busy_percent
        self._rate = Rate(_cpu_seconds, first_window)

    def sample(self) -> Reading:
        rates, span = self._rate.per_second()
        percent = 100.0 * rates["busy"] / rates["total"] if rates["total"] > 0 else 0.0
        load1, _, _ = os.getloadavg()
        values = {"busy_percent": round(percent, 2), "load1": load1, "over_seconds": round(span, 1)}
        if percent >= self.busy_percent:
            return Reading(self.name, "active", f"CPU {percent:.1f}% busy (≥ {self.busy_percent:g}%)", values)
        return Reading(self.name, "idle", f"CPU {percent:.1f}% busy (< {self.busy_percent:g}%)", values)
