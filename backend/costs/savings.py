"""The seam for auto-shutdown savings: VM stop intervals in, GPU-hours and dollars not spent out.

The VM area records when the inactivity agent stopped a VM (in its own tables); it turns those rows into
`StoppedInterval`s and calls `savings()`. A stopped host saves, for each of its GPUs in the inventory, the
overlap of the interval with [start, end) at the catalog price in effect during that overlap (split at price
changes). GPUs of unpriced models are reported as unpriced GPU-hours, not as free savings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import psycopg

from backend.costs.catalog import KIND_OF_GPU_SQL
from backend.queries.timeseries import as_utc, check_range


@dataclass(frozen=True)
class StoppedInterval:
    host: str
    start: datetime
    end: datetime
    reason: str = ""


@dataclass(frozen=True)
class HostSavings:
    host: str
    gpus: int
    stopped_hours: float
    saved_gpu_hours: float
    unpriced_gpu_hours: float
    saved_usd: float


@dataclass(frozen=True)
class Savings:
    start: datetime
    end: datetime
    saved_gpu_hours: float
    unpriced_gpu_hours: float
    saved_usd: float
    hosts: list[HostSavings]


def _hours(a: datetime, b: datetime) -> float:
    return max((b - a).total_seconds(), 0.0) / 3600


def savings(conn: psycopg.Connection, start: datetime, end: datetime, stopped: Iterable[StoppedInterval]) -> Savings:
    """What stopping these hosts saved within [start, end). Overlapping intervals of one host count once."""
    start, end = check_range(start, end)
    by_host: dict[str, list[tuple[datetime, datetime]]] = {}
    for s in stopped:
        a, b = max(as_utc(s.start), start), min(as_utc(s.end), end)
        if b > a:
            by_host.setdefault(s.host, []).append((a, b))
    hosts = [_host_savings(conn, host, _merge(spans)) for host, spans in sorted(by_host.items())]
    return Savings(start, end, sum(h.saved_gpu_hours for h in hosts), sum(h.unpriced_gpu_hours for h in hosts),
                   sum(h.saved_usd for h in hosts), hosts)


def _merge(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _host_savings(conn: psycopg.Connection, host: str, spans: list[tuple[datetime, datetime]]) -> HostSavings:
    gpus = conn.execute(
        f"SELECT g.model, {KIND_OF_GPU_SQL} AS kind FROM gpus g WHERE g.host = %s",
        (host,),
    ).fetchall()
    stopped_hours = sum(_hours(a, b) for a, b in spans)
    saved_usd = unpriced = 0.0
    for gpu in gpus:
        periods = conn.execute(
            """SELECT usd_per_gpu_hour, effective_from, effective_to FROM gpu_prices
               WHERE lower(gpu_model) = lower(%s) AND pricing_kind = %s ORDER BY effective_from""",
            (gpu["model"] or "", gpu["kind"]),
        ).fetchall()
        for a, b in spans:
            priced = 0.0
            for p in periods:
                lo, hi = max(a, p["effective_from"]), min(b, p["effective_to"] or b)
                priced += _hours(lo, hi)
                saved_usd += float(p["usd_per_gpu_hour"]) * _hours(lo, hi)
            unpriced += _hours(a, b) - priced
    return HostSavings(host, len(gpus), stopped_hours, stopped_hours * len(gpus), unpriced, saved_usd)
