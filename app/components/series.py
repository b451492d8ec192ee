"""Time series from the query layer as tables for Plotly, and the ECC / XID / throttle events they contain.

Only reshaping for display lives here; what an XID means or which throttle bits matter comes from the health area.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from backend.health.rules import decode_throttle
from backend.health.xid import lookup as xid_lookup

EVENT_KINDS = ("ECC", "XID", "Throttle")


def frame(points: Sequence[Any], metrics: Sequence[str]) -> pd.DataFrame:
    """Long format (`time`, `metric`, `value`) for `px.line(color="metric")`."""
    rows = [{"time": p.time, "metric": m, "value": p.values.get(m)} for p in points for m in metrics]
    return pd.DataFrame(rows, columns=["time", "metric", "value"])


def events(points: Sequence[Any]) -> pd.DataFrame:
    """One row per ECC counter increase, new XID code, or change to the worrying throttle reasons."""
    rows: list[dict[str, Any]] = []
    previous: dict[str, float] = {}
    last_reasons: tuple[str, ...] = ()
    last_xid = 0
    for point in points:
        values = point.values
        for column, label in (("ecc_sbe_vol_total", "single-bit"), ("ecc_dbe_vol_total", "double-bit")):
            value = values.get(column)
            if value is None:
                continue
            if column in previous and value > previous[column]:
                rows.append({"time": point.time, "kind": "ECC",
                             "text": f"+{value - previous[column]:.0f} {label} ECC errors (total {value:.0f})"})
            previous[column] = value
        code = int(values.get("xid_errors") or 0)
        if code and code != last_xid:  # exporters hold the last XID: report each new code once
            xid = xid_lookup(code)
            rows.append({"time": point.time, "kind": "XID", "text": f"XID {code}: {xid.name} ({xid.severity})"})
        last_xid = code
        mask = values.get("clocks_event_reasons")
        reasons = tuple(decode_throttle(int(mask))) if mask is not None else ()
        if reasons and reasons != last_reasons:
            rows.append({"time": point.time, "kind": "Throttle", "text": "throttled: " + ", ".join(reasons)})
        last_reasons = reasons
    return pd.DataFrame(rows, columns=["time", "kind", "text"])
