"""Network throughput on real interfaces (loopback excluded: local services talking to each other are not users)."""

from __future__ import annotations

import psutil

from backend.vm.signals.base import Rate, Reading


def _external_bytes() -> dict[str, float]:
    counters = psutil.net_io_counters(pernic=True)
    external = [c for nic, c in counters.items() if not nic.startswith("lo")]
    return {"bytes": float(sum(c.bytes_recv + c.bytes_sent for c in external)), "interfaces": float(len(external))}


class NetworkSignal:
    name = "network"

    def __init__(self, active_kib_per_s: float = 100.0, first_window: float = 1.0) -> None:
        self.active_kib_per_s = active_kib_per_s
        self._rate = Rate(_external_bytes, first_window)

    def sample(self) -> Reading:
        rates, span = self._rate.per_second()
        kib = rates["bytes"] / 1024
        values = {"kib_per_s": round(kib, 2), "over_seconds": round(span, 1)}
        if not self._rate.latest["interfaces"]:
            return Reading(self.name, "n/a", "no network interface besides loopback", values)
        if kib >= self.active_kib_per_s:
            return Reading(self.name, "active", f"network {kib:.0f} KiB/s (≥ {self.active_kib_per_s:g} KiB/s)", values)
        return Reading(self.name, "idle", f"network {kib:.1f} KiB/s (< {self.active_kib_per_s:g} KiB/s)", values)
