"""The health rules: DCGM's health watch plus per-model temperature limits, as pure functions over a GPU's history.

Each rule takes a `GpuHistory` and a `RuleContext` and returns findings (usually zero or one). Thresholds come
from NVIDIA DCGM's health watch (see docs/health.md for the table). Counters are read as increases inside the
window (resets tolerated), XIDs as events in the window, so a gauge that holds an old value never re-fires.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from backend.health import xid as xids
from backend.health.findings import Finding, Severity
from backend.health.history import GpuHistory, increments, trailing_run_start, windowed_rates, with_baseline
from backend.health.limits import ModelLimits

_RESET = "Drain the GPU's workloads and reset it (nvidia-smi -r)"
_RMA = "; if it recurs, open an RMA with the vendor"


@dataclass(frozen=True)
class RuleContext:
    now: datetime
    limits: ModelLimits
    window_s: float = 600.0
    xid_window_s: float = 3600.0
    rate_span_s: float = 60.0

    @property
    def window_start(self) -> datetime:
        return self.now - timedelta(seconds=self.window_s)

    @property
    def xid_window_start(self) -> datetime:
        return self.now - timedelta(seconds=self.xid_window_s)


Rule = Callable[[GpuHistory, RuleContext], list[Finding]]


def _at_least(rule: str, column: str, threshold: float, severity: Severity, title: str, action: str) -> Rule:
    """The latest value of `column` is at least `threshold` (sticky counters: DBE, remap failure, pending pages)."""

    def check(history: GpuHistory, ctx: RuleContext) -> list[Finding]:
        latest = history.latest(column)
        if latest is None or latest[1] < threshold:
            return []
        since = trailing_run_start(history.series(column), lambda v: v >= threshold) or latest[0]
        return [Finding(rule, severity, title, {column: latest[1], "threshold": threshold}, since, action)]

    check.__name__ = rule
    return check


def _growth(rule: str, column: str, severity: Severity, title: str, action: str) -> Rule:
    """The counter grew inside the window (throttle time, NVLink replays/recoveries)."""

    def check(history: GpuHistory, ctx: RuleContext) -> list[Finding]:
        points = with_baseline(history.series(column), ctx.window_start)
        steps = [(t, step) for t, step in increments(points) if step > 0]
        if not steps:
            return []
        grown = sum(step for _, step in steps)
        evidence = {f"{column}_increase": grown, "window_s": ctx.window_s}
        return [Finding(rule, severity, title, evidence, steps[0][0], action)]

    check.__name__ = rule
    return check


def _temperature(rule: str, column: str, kind: str, title: str) -> Rule:
    """The latest reading is at or over the model's warning / critical limit."""

    def check(history: GpuHistory, ctx: RuleContext) -> list[Finding]:
        latest = history.latest(column)
        if latest is None:
            return []
        warn, crit = getattr(ctx.limits, f"{kind}_warn"), getattr(ctx.limits, f"{kind}_crit")
        value = latest[1]
        if value < warn:
            return []
        severity: Severity = "critical" if value >= crit else "warning"
        limit = crit if severity == "critical" else warn
        since = trailing_run_start(history.series(column), lambda v: v >= limit) or latest[0]
        action = "Check cooling, fans and airflow; reduce the load or drain the GPU if it keeps rising"
        return [Finding(rule, severity, title, {column: value, "limit": limit}, since, action)]

    check.__name__ = rule
    return check


def retired_pages_limit(history: GpuHistory, ctx: RuleContext) -> list[Finding]:
    """SBE + DBE retired pages at 63 or more: the page-retirement table is (nearly) exhausted."""
    sbe, dbe = history.latest("retired_pages_sbe"), history.latest("retired_pages_dbe")
    if sbe is None and dbe is None:
        return []
    total = (sbe[1] if sbe else 0.0) + (dbe[1] if dbe else 0.0)
    if total < 63:
        return []
    at = max(p[0] for p in (sbe, dbe) if p)
    evidence = {"retired_pages_sbe": sbe[1] if sbe else None, "retired_pages_dbe": dbe[1] if dbe else None,
                "total": total, "threshold": 63}
    return [Finding("retired_pages_limit", "critical", "Retired pages at the limit", evidence, at,
                    "Replace the GPU: its page-retirement capacity is used up" + _RMA)]


def retired_pages_dbe_growth(history: GpuHistory, ctx: RuleContext) -> list[Finding]:
    """More than 15 DBE-retired pages and more than one added in the past week."""
    latest = history.latest("retired_pages_dbe")
    week_ago = history.week_ago.get("retired_pages_dbe")
    if latest is None or week_ago is None or latest[1] <= 15 or latest[1] - week_ago <= 1:
        return []
    evidence = {"retired_pages_dbe": latest[1], "added_in_week": latest[1] - week_ago, "threshold": 15}
    return [Finding("retired_pages_dbe_growth", "critical", "DBE page retirements keep growing", evidence,
                    latest[0], _RESET + "; schedule a replacement" + _RMA)]


def xid_events(history: GpuHistory, ctx: RuleContext) -> list[Finding]:
    """XID errors that happened inside the XID window; one finding per code, severity from the catalog.

    An event is a change of `xid_errors` to a non-zero code. The first sample loaded is only the baseline, so a
    gauge still holding an XID from before the window does not count.
    """
    points = history.series("xid_errors")
    seen: dict[int, list[datetime]] = {}
    for (_, prev), (time, value) in pairwise(points):
        if value and value != prev and time >= ctx.xid_window_start:
            seen.setdefault(int(value), []).append(time)
    findings = []
    for code, times in sorted(seen.items()):
        entry = xids.lookup(code)
        evidence = {"xid": code, "name": entry.name, "category": entry.category, "count": len(times),
                    "last_at": times[-1].isoformat(), "window_s": ctx.xid_window_s}
        findings.append(Finding(f"xid_{code}", entry.severity, f"XID {code}: {entry.name}", evidence, times[0],
                                entry.action))
    return findings


def pcie_replay_rate(history: GpuHistory, ctx: RuleContext) -> list[Finding]:
    """PCIe replays per minute above the per-lane budget × lanes for the model's PCIe generation."""
    points = with_baseline(history.series("pcie_replay_counter"), ctx.window_start)
    limit = ctx.limits.pcie_replays_per_min
    over = [(t, r * 60) for t, r in windowed_rates(points, ctx.rate_span_s) if r * 60 > limit]
    if not over:
        return []
    evidence = {"replays_per_min": max(r for _, r in over), "limit_per_min": limit,
                "pcie_gen": ctx.limits.pcie_gen, "pcie_lanes": ctx.limits.pcie_lanes}
    return [Finding("pcie_replay_rate", "warning", "PCIe replay rate above budget", evidence, over[0][0],
                    "Check the PCIe slot, riser and cabling; reseat the GPU; watch for XID 38/39/79")]


def nvlink_crc_rate(history: GpuHistory, ctx: RuleContext) -> list[Finding]:
    """NVLink flit CRC errors: 1/s or more is a warning, 100/s or more a failure."""
    points = with_baseline(history.series("nvlink_crc_flit_error_count_total"), ctx.window_start)
    rates = [(t, r) for t, r in windowed_rates(points, ctx.rate_span_s) if r >= 1.0]
    if not rates:
        return []
    worst = max(r for _, r in rates)
    severity: Severity = "critical" if worst >= 100.0 else "warning"
    evidence = {"crc_errors_per_s": worst, "warn_per_s": 1.0, "fail_per_s": 100.0}
    return [Finding("nvlink_crc_rate", severity, "NVLink CRC error rate", evidence, rates[0][0],
                    "Check the NVLink bridge/NVSwitch links (nvidia-smi nvlink -e); reseat or replace the link")]


THROTTLE_BITS: dict[int, str] = {0x8: "hw_slowdown", 0x20: "sw_thermal", 0x40: "hw_thermal", 0x80: "hw_power_brake"}


def decode_throttle(mask: int) -> list[str]:
    """Names of the worrying clock-event reasons set in a `clocks_event_reasons` bitmask."""
    return [name for bit, name in THROTTLE_BITS.items() if mask & bit]


def clock_throttle(history: GpuHistory, ctx: RuleContext) -> list[Finding]:
    """The clocks are held down by hardware slowdown, thermal limits or the power brake right now."""
    latest = history.latest("clocks_event_reasons")
    if latest is None or not decode_throttle(int(latest[1])):
        return []
    mask = int(latest[1])
    bits = sum(bit for bit in THROTTLE_BITS if mask & bit)
    since = trailing_run_start(history.series("clocks_event_reasons"), lambda v: bool(int(v) & bits)) or latest[0]
    evidence = {"clocks_event_reasons": hex(mask), "reasons": decode_throttle(mask)}
    title = "Clocks throttled: " + ", ".join(decode_throttle(mask))
    action = "Check cooling and power delivery (PSU, power-brake signal); see nvidia-smi -q -d PERFORMANCE"
    return [Finding("clock_throttle", "warning", title, evidence, since, action)]


RULES: tuple[Rule, ...] = (
    _at_least("ecc_dbe_volatile", "ecc_dbe_vol_total", 1, "critical", "Double-bit ECC errors since driver load",
              _RESET + _RMA),
    retired_pages_limit,
    retired_pages_dbe_growth,
    _at_least("row_remap_failure", "row_remap_failure", 1, "critical", "Row remapping failed",
              "Replace the GPU: memory rows can no longer be remapped" + _RMA),
    _at_least("retired_pages_pending", "retired_pages_pending", 1, "warning", "Page retirement pending",
              "Reset the GPU at the next maintenance window so the pending retirement takes effect"),
    _at_least("uncorrectable_remapped_rows", "uncorrectable_remapped_rows", 512, "warning",
              "Many uncorrectable remapped rows", "Plan a replacement; run dcgmi diag -r 3 at the next window"),
    xid_events,
    _growth("thermal_violation", "thermal_violation", "warning", "Thermal throttling",
            "Check cooling, fans and airflow around the GPU"),
    _growth("power_violation", "power_violation", "warning", "Power-limit throttling",
            "Check the power limit (nvidia-smi -q -d POWER) and the PSU; expect lower clocks under this load"),
    pcie_replay_rate,
    nvlink_crc_rate,
    _growth("nvlink_replay_errors", "nvlink_replay_error_count_total", "critical", "NVLink replay errors",
            "Drain and reset the GPUs on this NVLink; check the NVLink/NVSwitch fabric" + _RMA),
    _growth("nvlink_recovery_errors", "nvlink_recovery_error_count_total", "critical", "NVLink recovery errors",
            "Drain and reset the GPUs on this NVLink; check the NVLink/NVSwitch fabric" + _RMA),
    _temperature("gpu_temperature", "gpu_temp", "gpu_temp", "GPU temperature high"),
    _temperature("memory_temperature", "memory_temp", "memory_temp", "HBM temperature high"),
    clock_throttle,
)
RULE_IDS: tuple[str, ...] = tuple(r.__name__ for r in RULES)


def run_rules(history: GpuHistory, ctx: RuleContext) -> list[Finding]:
    """Every rule's findings, worst first."""
    found = [f for rule in RULES for f in rule(history, ctx)]
    return sorted(found, key=lambda f: (f.severity != "critical", f.rule))
