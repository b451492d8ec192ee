"""Cost per stream: each stream session charged its share of the GPU-hours of the VM that carries it.

The binding: a session's host is the VM whose nginx-rtmp accepted it (the callbacks write `STREAMS_HOST` into
`live_streams`, and triggers keep every session in `stream_sessions`). While a stream is live it is charged the
host's GPUs at the catalog price in effect at each moment; when several streams are live on one host at once,
that time is split evenly between them. Time with no stream live stays the VM's idle cost, charged to nobody.
Limits: a session with no host (STREAMS_HOST unset) or on a host with no GPUs in the inventory costs nothing and
is counted as unattributed; the VM's non-GPU price is not charged; an even split ignores bitrate and resolution.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import psycopg

from backend.costs.savings import HostRates
from backend.queries.catalog import BadParameter
from backend.queries.timeseries import as_utc, check_range

RULE = ("each stream is charged its VM's GPU-hours while it is live, at catalog prices; streams live at the same "
        "time on one VM split that time evenly; time with no stream live stays the VM's idle cost")
GROUPS = ("stream", "key", "owner", "host", "label:<name>")
_LABEL = re.compile(r"[A-Za-z0-9_.\-/]{1,64}")
TOP = 10


@dataclass(frozen=True)
class StreamCostRow:
    key: str
    sessions: int
    stream_hours: float
    gpu_hours: float
    """The share of the VM's GPU-hours charged to this group."""
    unpriced_gpu_hours: float
    cost_usd: float
    usd_per_stream_hour: float | None


@dataclass(frozen=True)
class StreamCosts:
    start: datetime
    end: datetime
    group_by: str
    rule: str
    rows: list[StreamCostRow]
    """Largest cost first."""
    top_streams: list[StreamCostRow]
    total: StreamCostRow
    unattributed_stream_hours: float
    """Live hours of sessions with no host, or on a host with no GPUs: charged nothing."""


@dataclass
class _Share:
    session: dict[str, Any]
    hours: float = 0.0
    gpu_hours: float = 0.0
    unpriced: float = 0.0
    usd: float = 0.0


_SESSIONS = """
SELECT s.id, s.app, s.stream, s.host, s.key_id, k.owner, coalesce(k.labels, '{}'::jsonb) AS labels,
       greatest(s.started_at, %(start)s) AS lo, least(coalesce(s.ended_at, %(now)s), %(end)s) AS hi
FROM stream_sessions s LEFT JOIN stream_keys k ON k.id = s.key_id
WHERE s.started_at < %(end)s AND coalesce(s.ended_at, %(now)s) > %(start)s
ORDER BY s.started_at, s.id"""


def _grouper(group_by: str) -> Any:
    if group_by.startswith("label:"):
        label = group_by.removeprefix("label:")
        if not _LABEL.fullmatch(label):
            raise BadParameter("group_by", "name a label after 'label:' (letters, digits, '_', '-', '.', '/')")
        return lambda s: str(s["labels"].get(label, "(none)"))
    keys = {"stream": lambda s: f"{s['app']}/{s['stream']}", "key": lambda s: s["key_id"] or "(no key)",
            "owner": lambda s: s["owner"] or "(no owner)", "host": lambda s: s["host"] or "(unattributed)"}
    if group_by not in keys:
        raise BadParameter("group_by", f"choose one of {', '.join(GROUPS)}")
    return keys[group_by]


def stream_costs(conn: psycopg.Connection, start: datetime, end: datetime, *, group_by: str = "stream",
                 now: datetime | None = None) -> StreamCosts:
    """Cost of the stream sessions live in [start, end), grouped, with the top streams and the total."""
    start, end = check_range(start, end)
    key_of = _grouper(group_by)
    now = as_utc(now) if now else datetime.now(UTC)
    sessions = [s for s in conn.execute(_SESSIONS, {"start": start, "end": end, "now": now}).fetchall()
                if s["hi"] > s["lo"]]
    shares = [_Share(s, (s["hi"] - s["lo"]).total_seconds() / 3600) for s in sessions]
    rates = HostRates(conn)
    by_host: dict[str, list[_Share]] = defaultdict(list)
    unattributed = 0.0
    for share in shares:
        host = share.session["host"]
        if host is None or rates.gpus(host) == 0:
            unattributed += share.hours
        else:
            by_host[host].append(share)
    for host, host_shares in by_host.items():
        _split(rates, host, host_shares)
    rows = _group(shares, key_of)
    return StreamCosts(start, end, group_by, RULE, rows, _group(shares, _grouper("stream"))[:TOP],
                       _total(shares), unattributed)


def _split(rates: HostRates, host: str, shares: list[_Share]) -> None:
    """Walk the host's session boundaries; each stretch's GPU cost goes in equal parts to the streams live in it."""
    cuts = sorted({t for s in shares for t in (s.session["lo"], s.session["hi"])})
    for a, b in pairwise(cuts):
        live = [s for s in shares if s.session["lo"] <= a and s.session["hi"] >= b]
        if not live:
            continue
        priced = rates.price(host, a, b, with_vm=False)
        for s in live:
            s.gpu_hours += priced.gpu_hours / len(live)
            s.unpriced += priced.unpriced_gpu_hours / len(live)
            s.usd += priced.gpu_usd / len(live)


def _row(key: str, shares: list[_Share]) -> StreamCostRow:
    hours = sum(s.hours for s in shares)
    usd = sum(s.usd for s in shares)
    return StreamCostRow(key, len(shares), hours, sum(s.gpu_hours for s in shares), sum(s.unpriced for s in shares),
                         usd, usd / hours if hours else None)


def _group(shares: list[_Share], key_of: Any) -> list[StreamCostRow]:
    groups: dict[str, list[_Share]] = defaultdict(list)
    for s in shares:
        groups[key_of(s.session)].append(s)
    return sorted((_row(k, v) for k, v in groups.items()), key=lambda r: (-r.cost_usd, r.key))


def _total(shares: list[_Share]) -> StreamCostRow:
    return _row("total", shares)
