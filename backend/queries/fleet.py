"""The fleet overview (latest sample and status per GPU), one GPU's detail, and host/datacenter rollups.

The latest sample comes from `gpus.last_seen` plus one index lookup per GPU on `gpu_metrics (gpu_uuid, time)`
(LATERAL … ORDER BY time DESC LIMIT 1), so the cost grows with the number of GPUs, not with the samples stored.
Status comes from the health engine's `gpu_health` table; a GPU without a fresh sample is `unknown` whatever its
last evaluation said, and one never evaluated is `unknown` too (we cannot vouch for it). The detail's findings and
failure risk come through the health area's own readers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg import sql

from backend.config import get_settings
from backend.errors import NotFound
from backend.health.findings import Finding
from backend.health.risk.store import RiskPrediction, get_risk
from backend.health.store import finding_from_json
from backend.queries.catalog import BadParameter
from backend.telemetry.fields import COLUMNS

SUMMARY_METRICS: tuple[str, ...] = (
    "gpu_temp", "memory_temp", "power_usage", "gpu_util", "fb_used", "fb_free", "sm_clock", "clocks_event_reasons",
    "ecc_dbe_vol_total", "xid_errors",
)
"""The metrics shown per GPU in the fleet overview (the detail view has them all)."""
STATUSES = ("healthy", "warning", "critical", "unknown")
_LATEST_LOOKBACK = timedelta(days=1)


@dataclass(frozen=True)
class GpuSummary:
    gpu_uuid: str
    host: str
    gpu_index: int
    model: str | None
    driver: str | None
    labels: dict[str, str]
    first_seen: datetime
    last_seen: datetime
    stale: bool
    status: str
    sample_time: datetime | None
    latest: dict[str, float | int | None]


@dataclass(frozen=True)
class FleetPage:
    items: list[GpuSummary]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class GpuDetail:
    gpu: GpuSummary
    status_since: datetime | None
    evaluated_at: datetime | None
    findings: list[Finding]
    risk: RiskPrediction | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HostRollup:
    key: str
    gpus: int
    models: list[str]
    status_counts: dict[str, int]
    stale_gpus: int
    last_seen: datetime
    avg_gpu_temp: float | None
    max_gpu_temp: float | None
    avg_gpu_util: float | None
    total_power_w: float | None


def _fresh_after(now: datetime | None, stale_after: timedelta | None) -> datetime:
    """Samples older than this make a GPU stale (`unknown`); the limit is the health engine's
    HEALTH_STALE_AFTER_S unless the caller gives one."""
    limit = stale_after if stale_after is not None else timedelta(seconds=get_settings().health_stale_after_s)
    return (now or datetime.now(UTC)) - limit


_STATUS = sql.SQL("CASE WHEN g.last_seen < %(fresh_after)s THEN 'unknown' ELSE coalesce(h.status, 'unknown') END")
_HEALTH = sql.SQL("LEFT JOIN gpu_health h ON h.gpu_uuid = g.gpu_uuid")


def _latest_join(columns: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(
        """LEFT JOIN LATERAL (
               SELECT m.time AS sample_time, {cols} FROM gpu_metrics m
               WHERE m.gpu_uuid = g.gpu_uuid AND m.time <= g.last_seen AND m.time > g.last_seen - %(lookback)s
               ORDER BY m.time DESC LIMIT 1) l ON true"""
    ).format(cols=sql.SQL(", ").join(sql.SQL("m.{}").format(sql.Identifier(c)) for c in columns))


def _summary(row: dict[str, Any], columns: tuple[str, ...], fresh_after: datetime) -> GpuSummary:
    return GpuSummary(
        gpu_uuid=row["gpu_uuid"], host=row["host"], gpu_index=row["gpu_index"], model=row["model"],
        driver=row["driver"], labels=row["labels"] or {}, first_seen=row["first_seen"], last_seen=row["last_seen"],
        stale=row["last_seen"] < fresh_after, status=row["status"], sample_time=row["sample_time"],
        latest={c: row[c] for c in columns},
    )


def fleet_overview(
    conn: psycopg.Connection,
    *,
    host: str | None = None,
    model: str | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
    now: datetime | None = None,
    stale_after: timedelta | None = None,
) -> FleetPage:
    """Every GPU (filtered, ordered by host and index, paginated) with its status and latest sample."""
    if status is not None and status not in STATUSES:
        raise BadParameter("status", f"unknown status {status!r}; choose one of {', '.join(STATUSES)}")
    if not 1 <= limit <= 1000:
        raise BadParameter("limit", "must be between 1 and 1000")
    if offset < 0:
        raise BadParameter("offset", "must be 0 or more")
    fresh_after = _fresh_after(now, stale_after)
    params = {"host": host, "model": model, "status": status, "limit": limit, "offset": offset,
              "fresh_after": fresh_after, "lookback": _LATEST_LOOKBACK}
    filtered = sql.SQL(
        """SELECT g.*, {status} AS status FROM gpus g {health}
           WHERE (%(host)s::text IS NULL OR g.host = %(host)s)
             AND (%(model)s::text IS NULL OR g.model = %(model)s)
             AND (%(status)s::text IS NULL OR {status} = %(status)s)"""
    ).format(status=_STATUS, health=_HEALTH)
    page = sql.SQL(
        """WITH filtered AS ({filtered}),
           page AS (SELECT * FROM filtered ORDER BY host, gpu_index, gpu_uuid LIMIT %(limit)s OFFSET %(offset)s)
           SELECT g.*, l.*, (SELECT count(*) FROM filtered) AS total FROM page g {latest}
           ORDER BY g.host, g.gpu_index, g.gpu_uuid"""
    ).format(filtered=filtered, latest=_latest_join(SUMMARY_METRICS))
    rows = conn.execute(page, params).fetchall()
    if rows:
        total = rows[0]["total"]
    else:
        total = conn.execute(sql.SQL("SELECT count(*) AS n FROM ({}) f").format(filtered), params).fetchone()["n"]
    items = [_summary(r, SUMMARY_METRICS, fresh_after) for r in rows]
    return FleetPage(items, total, limit, offset)


def gpu_detail(
    conn: psycopg.Connection, gpu_uuid: str, *, now: datetime | None = None,
    stale_after: timedelta | None = None,
) -> GpuDetail:
    """One GPU: inventory, every metric of its latest sample, status with findings, and failure risk."""
    fresh_after = _fresh_after(now, stale_after)
    query = sql.SQL(
        """SELECT g.*, {status} AS status, h.status_since, h.evaluated_at, h.findings, l.*, x.extra
           FROM gpus g {health} {latest}
           LEFT JOIN LATERAL (SELECT m.extra FROM gpu_metrics m WHERE m.gpu_uuid = g.gpu_uuid
                              AND m.time = l.sample_time) x ON true
           WHERE g.gpu_uuid = %(gpu_uuid)s"""
    ).format(status=_STATUS, health=_HEALTH, latest=_latest_join(COLUMNS))
    row = conn.execute(query, {"gpu_uuid": gpu_uuid, "fresh_after": fresh_after,
                               "lookback": _LATEST_LOOKBACK}).fetchone()
    if row is None:
        raise NotFound(f"no GPU with uuid {gpu_uuid!r}")
    return GpuDetail(
        gpu=_summary(row, COLUMNS, fresh_after), status_since=row["status_since"], evaluated_at=row["evaluated_at"],
        findings=[finding_from_json(f) for f in row["findings"] or []], risk=get_risk(conn, gpu_uuid),
        extra=row["extra"] or {},
    )


RollupKey = Literal["host", "datacenter"]


def host_rollup(
    conn: psycopg.Connection, *, by: RollupKey = "host", now: datetime | None = None,
    stale_after: timedelta | None = None,
) -> list[HostRollup]:
    """Per host (or per datacenter: the `datacenter` label, else `zone`): GPU count, models, status counts and
    the latest temperature, utilization and power across its GPUs."""
    if by not in ("host", "datacenter"):
        raise BadParameter("by", "choose host or datacenter")
    fresh_after = _fresh_after(now, stale_after)
    key = sql.SQL("g.host" if by == "host"
                  else "coalesce(g.labels->>'datacenter', g.labels->>'zone', '(unlabelled)')")
    query = sql.SQL(
        """WITH latest AS (
               SELECT {key} AS key, g.model, g.last_seen, {status} AS status, l.gpu_temp, l.gpu_util, l.power_usage
               FROM gpus g {health} {latest})
           SELECT key, count(*) AS gpus, array_agg(DISTINCT model) FILTER (WHERE model IS NOT NULL) AS models,
                  (SELECT jsonb_object_agg(status, n) FROM (SELECT status, count(*) AS n FROM latest s
                                                             WHERE s.key = l.key GROUP BY status) c) AS status_counts,
                  max(last_seen) AS last_seen, count(*) FILTER (WHERE last_seen < %(fresh_after)s) AS stale_gpus,
                  avg(gpu_temp) AS avg_gpu_temp, max(gpu_temp) AS max_gpu_temp, avg(gpu_util) AS avg_gpu_util,
                  sum(power_usage) AS total_power_w
           FROM latest l GROUP BY key ORDER BY key"""
    ).format(key=key, status=_STATUS, health=_HEALTH,
             latest=_latest_join(("gpu_temp", "gpu_util", "power_usage")))
    rows = conn.execute(query, {"fresh_after": fresh_after, "lookback": _LATEST_LOOKBACK}).fetchall()
    return [
        HostRollup(key=r["key"], gpus=r["gpus"], models=sorted(r["models"] or []), status_counts=r["status_counts"],
                   stale_gpus=r["stale_gpus"], last_seen=r["last_seen"], avg_gpu_temp=r["avg_gpu_temp"],
                   max_gpu_temp=r["max_gpu_temp"], avg_gpu_util=r["avg_gpu_util"], total_power_w=r["total_power_w"])
        for r in rows
    ]
