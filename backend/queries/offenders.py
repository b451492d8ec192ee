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

_QUERIES: dict[str, str] = {
    "hottest": """
        SELECT r.gpu_uuid, max(r.gpu_temp_max) AS value, max(r.memory_temp_max) AS memory_temp_max,
               avg(r.gpu_temp_avg) AS gpu_temp_avg
        FROM gpu_metrics_1m r WHERE r.bucket >= %(start)s AND r.bucket < %(end)s
        GROUP BY r.gpu_uuid HAVING max(r.gpu_temp_max) IS NOT NULL
        ORDER BY value DESC, r.gpu_uuid LIMIT %(n)s""",
    "ecc": """
        SELECT r.gpu_uuid,
               max(r.ecc_dbe_vol_total_max) - min(r.ecc_dbe_vol_total_min) AS dbe_increase,
               max(r.ecc_sbe_vol_total_max) - min(r.ecc_sbe_vol_total_min) AS sbe_increase,
               coalesce(max(r.ecc_dbe_vol_total_max) - min(r.ecc_dbe_vol_total_min), 0)
                 + coalesce(max(r.ecc_sbe_vol_total_max) - min(r.ecc_sbe_vol_total_min), 0) AS value
        FROM gpu_metrics_1m r WHERE r.bucket >= %(start)s AND r.bucket < %(end)s
        GROUP BY r.gpu_uuid
        HAVING coalesce(max(r.ecc_dbe_vol_total_max) - min(r.ecc_dbe_vol_total_min), 0)
             + coalesce(max(r.ecc_sbe_vol_total_max) - min(r.ecc_sbe_vol_total_min), 0) > 0
        ORDER BY dbe_increase DESC NULLS LAST, sbe_increase DESC NULLS LAST, r.gpu_uuid LIMIT %(n)s""",
    "throttled": """
        SELECT r.gpu_uuid,
               count(*) FILTER (WHERE r.clocks_event_reasons_or & %(mask)s <> 0) AS value,
               bit_or(r.clocks_event_reasons_or) & %(mask)s AS reasons,
               (max(r.power_violation_max) - min(r.power_violation_min)) / 1e6 AS power_violation_s,
               (max(r.thermal_violation_max) - min(r.thermal_violation_min)) / 1e6 AS thermal_violation_s
        FROM gpu_metrics_1m r WHERE r.bucket >= %(start)s AND r.bucket < %(end)s
        GROUP BY r.gpu_uuid HAVING count(*) FILTER (WHERE r.clocks_event_reasons_or & %(mask)s <> 0) > 0
        ORDER BY value DESC, r.gpu_uuid LIMIT %(n)s""",
}
_ORDER = {"ecc": "o.dbe_increase DESC NULLS LAST, o.sbe_increase DESC NULLS LAST"}
_UNITS = {"hottest": "°C (max GPU temperature)", "ecc": "ECC errors added (SBE + DBE, volatile)",
          "throttled": "minutes with a throttle reason"}


@dataclass(frozen=True)
class Offender:
    gpu_uuid: str
    host: str
    gpu_index: int
    model: str | None
    value: float
    unit: str
    detail: dict[str, Any]


def top_offenders(conn: psycopg.Connection, kind: Kind, start: datetime, end: datetime, *, n: int = 10
                  ) -> list[Offender]:
    """The `n` worst GPUs in [start, end) by `kind`; GPUs with nothing to report are left out."""
    if kind not in _QUERIES:
        raise BadParameter("kind", "choose hottest, ecc or throttled")
    if not 1 <= n <= 1000:
        raise BadParameter("n", "must be between 1 and 1000")
    start, end = check_range(start, end, "1m")
    rows = conn.execute(
        f"""SELECT g.host, g.gpu_index, g.model, o.* FROM ({_QUERIES[kind]}) o JOIN gpus g USING (gpu_uuid)
            ORDER BY {_ORDER.get(kind, "o.value DESC")}, o.gpu_uuid""",
        {"start": start, "end": end, "n": n, "mask": THROTTLE_MASK},
    ).fetchall()
    fixed = {"gpu_uuid", "host", "gpu_index", "model", "value"}
    return [
        Offender(r["gpu_uuid"], r["host"], r["gpu_index"], r["model"], float(r["value"]), _UNITS[kind],
                 {k: v for k, v in r.items() if k not in fixed})
        for r in rows
    ]
