"""Risk features from a GPU's recent history: the same function feeds training (simulated fleets) and live
prediction (the database), so the model sees identical inputs in both.

Rates are per hour and shares are fractions of the lookback, so the sample interval does not change the values.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import pairwise

from backend.health.history import Point, Sample, increase, with_baseline
from backend.health.xid import lookup

LOOKBACK = timedelta(hours=3)
RECENT = timedelta(hours=1)
_HW_THROTTLE = 0x8 | 0x40 | 0x80

FEATURES: tuple[str, ...] = (
    "temp_last", "temp_mean", "temp_max", "temp_slope_c_per_h", "memory_temp_max", "memory_temp_slope_c_per_h",
    "util_mean", "sbe_per_h", "sbe_last_hour", "sbe_acceleration", "dbe_total", "retired_pages",
    "retired_pending", "correctable_remaps_per_h", "thermal_throttle_share", "power_throttle_share",
    "hw_throttle_share", "xid_events", "xid_critical_events", "power_std", "power_cv", "pcie_replays_per_h",
    "pcie_replays_last_hour", "nvlink_crc_per_h", "nvlink_crc_last_hour", "nvlink_errors",
)


def _series(samples: Sequence[Sample], column: str) -> list[Point]:
    return [(s.time, float(v)) for s in samples if (v := s.values.get(column)) is not None]


def _slope_per_h(points: list[Point]) -> float:
    """Least-squares slope in units per hour (0 with fewer than three points)."""
    if len(points) < 3:
        return 0.0
    t0 = points[0][0]
    xs = [(t - t0).total_seconds() / 3600 for t, _ in points]
    ys = [v for _, v in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def _mean(points: list[Point]) -> float:
    return statistics.fmean(v for _, v in points) if points else 0.0


def _last(points: list[Point]) -> float:
    return points[-1][1] if points else 0.0


def _grown(points: list[Point], since: datetime) -> float:
    return increase(with_baseline(points, since))


def extract(samples: Sequence[Sample], at: datetime, lookback: timedelta = LOOKBACK) -> dict[str, float]:
    """Features at `at` from the samples in (at - lookback, at] (plus the one before, as counter baseline)."""
    start, recent = at - lookback, at - RECENT
    window = [s for s in samples if start < s.time <= at]
    hours = lookback.total_seconds() / 3600
    temp, mem_temp = _series(window, "gpu_temp"), _series(window, "memory_temp")
    power = [v for _, v in _series(window, "power_usage")]
    sbe, pcie = _series(samples, "ecc_sbe_vol_total"), _series(samples, "pcie_replay_counter")
    crc = _series(samples, "nvlink_crc_flit_error_count_total")
    sbe_per_h = _grown(sbe, start) / hours
    sbe_last_hour = _grown(sbe, recent)
    xids = _series(samples, "xid_errors")
    xid_codes = [int(v) for (_, prev), (t, v) in pairwise(xids) if v and v != prev and t > start]
    masks = [int(v) for _, v in _series(window, "clocks_event_reasons")]
    power_mean = statistics.fmean(power) if power else 0.0
    power_std = statistics.pstdev(power) if len(power) > 1 else 0.0
    return {
        "temp_last": _last(temp),
        "temp_mean": _mean(temp),
        "temp_max": max((v for _, v in temp), default=0.0),
        "temp_slope_c_per_h": _slope_per_h([p for p in temp if p[0] > recent]),
        "memory_temp_max": max((v for _, v in mem_temp), default=0.0),
        "memory_temp_slope_c_per_h": _slope_per_h([p for p in mem_temp if p[0] > recent]),
        "util_mean": _mean(_series(window, "gpu_util")),
        "sbe_per_h": sbe_per_h,
        "sbe_last_hour": sbe_last_hour,
        "sbe_acceleration": sbe_last_hour - sbe_per_h,
        "dbe_total": _last(_series(window, "ecc_dbe_vol_total")),
        "retired_pages": _last(_series(window, "retired_pages_sbe")) + _last(_series(window, "retired_pages_dbe")),
        "retired_pending": _last(_series(window, "retired_pages_pending")),
        "correctable_remaps_per_h": _grown(_series(samples, "correctable_remapped_rows"), start) / hours,
        "thermal_throttle_share": _grown(_series(samples, "thermal_violation"), start) / (hours * 3600e6),
        "power_throttle_share": _grown(_series(samples, "power_violation"), start) / (hours * 3600e6),
        "hw_throttle_share": sum(bool(m & _HW_THROTTLE) for m in masks) / len(masks) if masks else 0.0,
        "xid_events": float(len(xid_codes)),
        "xid_critical_events": float(sum(lookup(c).severity == "critical" for c in xid_codes)),
        "power_std": power_std,
        "power_cv": power_std / power_mean if power_mean else 0.0,
        "pcie_replays_per_h": _grown(pcie, start) / hours,
        "pcie_replays_last_hour": _grown(pcie, recent),
        "nvlink_crc_per_h": _grown(crc, start) / hours,
        "nvlink_crc_last_hour": _grown(crc, recent),
        "nvlink_errors": _grown(_series(samples, "nvlink_replay_error_count_total"), start)
        + _grown(_series(samples, "nvlink_recovery_error_count_total"), start),
    }
