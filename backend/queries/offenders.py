"""Top-N offenders over a window, from the 1-minute rollup: hottest, most ECC errors, most throttled."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg

from backend.queries.catalog import BadParameter
from backend.queries.timeseries import check_range

Kind = Literal["hottest", "ecc", "throttled"]
THROTTLE_MASK = 0x4 | 0x8 | 0x20 | 0x40 | 0x80
"""Clock-event reasons that mean lost performance: SW power cap, HW slowdown, SW/HW thermal, HW power brake
(0x1 idle and the application-clock settings are not throttling)."""

KINDS: tuple[Kind, ...] = ("hottest", "ecc", "throttled")
_PER_GPU = """
    SELECT r.gpu_uuid, g.host, g.gpu_index, g.model,
           max(r.gpu_temp_max) AS temp_max, max(r.memory_temp_max) AS memory_temp_max,
           avg(r.gpu_temp_avg) AS gpu_temp_avg,
           max(r.ecc_dbe_vol_total_max) - min(r.ecc_dbe_vol_total_min) AS dbe_increase,
           max(r.ecc_sbe_vol_total_max) - min(r.ecc_sbe_vol_total_min) AS sbe_increase,
           count(*) FILTER (WHERE r.clocks_event_reasons_or & %(mask)s <> 0) AS throttled_minutes,
           bit_or(r.clocks_event_reasons_or) & %(mask)s AS reasons,
           (max(r.power_violation_max) - min(r.power_violation_min)) / 1e6 AS power_violation_s,
           (max(r.thermal_violation_max) - min(r.thermal_violation_min)) / 1e6 AS thermal_violation_s
    FROM gpu_metrics_1m r JOIN gpus g USING (gpu_uuid)
    WHERE r.bucket >= %(start)s AND r.bucket < %(end)s
    GROUP BY r.gpu_uuid, g.host, g.gpu_index, g.model"""
"""Every kind's numbers per GPU in one pass over the window's 1-minute rollups: the three rankings read the same
rows, so one scan costs about what one ranking did."""
_DETAIL: dict[str, tuple[str, ...]] = {
    "hottest": ("memory_temp_max", "gpu_temp_avg"),
    "ecc": ("dbe_increase", "sbe_increase"),
    "throttled": ("reasons", "power_violation_s", "thermal_violation_s"),
}
_UNITS = {"hottest": "°C (max GPU temperature)", "ecc": "ECC errors added (SBE + DBE, volatile)",
          "throttled": "minutes with a throttle reason"}


def _descending(value: Any) -> tuple[bool, Any]:
    """A sort key for DESC NULLS LAST."""
    return (value is None, -value if value is not None else 0)


def _value(kind: str, row: dict[str, Any]) -> Any:
    if kind == "hottest":
        return row["temp_max"]
    if kind == "ecc":
        return (row["dbe_increase"] or 0) + (row["sbe_increase"] or 0)
    return row["throttled_minutes"]


def _reports(kind: str, row: dict[str, Any]) -> bool:
    """Whether a GPU has something to say for `kind`: a temperature, ECC errors added, a throttled minute."""
    return row["temp_max"] is not None if kind == "hottest" else bool(_value(kind, row))


def _order(kind: str, row: dict[str, Any]) -> tuple:
    if kind == "ecc":
        return (*_descending(row["dbe_increase"]), *_descending(row["sbe_increase"]), row["gpu_uuid"])
    return (*_descending(_value(kind, row)), row["gpu_uuid"])


@dataclass(frozen=True)
class Offender:
    gpu_uuid: str
    host: str
    gpu_index: int
    model: str | None
    value: float
    unit: str
    detail: dict[str, Any]


def offenders_by_kind(conn: psycopg.Connection, start: datetime, end: datetime, *, n: int = 10
                      ) -> dict[Kind, list[Offender]]:
    """The `n` worst GPUs in [start, end) for every kind; GPUs with nothing to report are left out."""
    if not 1 <= n <= 1000:
        raise BadParameter("n", "must be between 1 and 1000")
    start, end = check_range(start, end, "1m")
    rows = conn.execute(_PER_GPU, {"start": start, "end": end, "mask": THROTTLE_MASK}).fetchall()
    found: dict[Kind, list[Offender]] = {}
    for kind in KINDS:
        reporting = [r for r in rows if _reports(kind, r)]
        found[kind] = [
            Offender(r["gpu_uuid"], r["host"], r["gpu_index"], r["model"], float(_value(kind, r)), _UNITS[kind],
                     {k: r[k] for k in _DETAIL[kind]})
            for r in sorted(reporting, key=lambda r, k=kind: _order(k, r))[:n]
        ]
    return found


def top_offenders(conn: psycopg.Connection, kind: Kind, start: datetime, end: datetime, *, n: int = 10
                  ) -> list[Offender]:
    """The `n` worst GPUs in [start, end) by `kind`."""
    if kind not in KINDS:
        raise BadParameter("kind", "choose hottest, ecc or throttled")
    return offenders_by_kind(conn, start, end, n=n)[kind]
