"""The health tables and the fleet loader: one query for every GPU's recent samples, one for the inventory."""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from backend.health.findings import Finding, GpuHealth
from backend.health.history import GpuHistory, Sample

# What the rules and the risk features read.
COLUMNS: tuple[str, ...] = (
    "gpu_temp", "memory_temp", "power_usage", "gpu_util", "correctable_remapped_rows", "pcie_replay_counter",
    "xid_errors", "ecc_sbe_vol_total",
    "ecc_dbe_vol_total", "retired_pages_sbe", "retired_pages_dbe", "retired_pages_pending",
    "uncorrectable_remapped_rows", "row_remap_failure", "clocks_event_reasons", "power_violation",
    "thermal_violation", "nvlink_crc_flit_error_count_total", "nvlink_replay_error_count_total",
    "nvlink_recovery_error_count_total",
)
WEEK = timedelta(days=7)


def load_fleet(conn: psycopg.Connection, now: datetime, window: timedelta,
               xid_window: timedelta | None = None) -> list[GpuHistory]:
    """Every known GPU with its samples in (now - window, now], oldest first, in one query for the whole fleet.

    With a longer `xid_window`, the older part of it is thinned in SQL to the rows where `xid_errors` changes
    (plus each GPU's first row as the baseline): the XID events are exactly the same, at a fraction of the rows.
    GPUs in the inventory without samples come back with none (they are stale); GPUs with samples but not (yet)
    in the inventory are included too.
    """
    inventory = conn.execute(
        """SELECT g.gpu_uuid, g.host, g.gpu_index, g.model, g.last_seen, w.retired_pages_dbe AS week_dbe
           FROM gpus g
           LEFT JOIN LATERAL (
               SELECT m.retired_pages_dbe FROM gpu_metrics m
               WHERE m.gpu_uuid = g.gpu_uuid AND m.time >= %(week)s AND m.time <= %(now)s
                 AND m.retired_pages_dbe IS NOT NULL
               ORDER BY m.time LIMIT 1) w ON true""",
        {"week": now - WEEK, "now": now},
    ).fetchall()
    fleet = {
        r["gpu_uuid"]: GpuHistory(r["gpu_uuid"], r["host"], r["gpu_index"], r["model"], [],
                                  {"retired_pages_dbe": r["week_dbe"]}, r["last_seen"])
        for r in inventory
    }
    params = {"start": now - window, "now": now, "xid_start": now - max(window, xid_window or window)}
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        cur.execute(_SAMPLES, params)
        for gpu_uuid, host, gpu_index, time, *values in cur:
            history = fleet.get(gpu_uuid)
            if history is None:
                history = fleet[gpu_uuid] = GpuHistory(gpu_uuid, host, gpu_index, None, [])
            history.samples.append(Sample(time, dict(zip(COLUMNS, values, strict=True))))
    return sorted(fleet.values(), key=lambda h: (h.host, h.gpu_index, h.gpu_uuid))


_SAMPLES = sql.SQL(
    """SELECT gpu_uuid, host, gpu_index, time, {cols} FROM gpu_metrics WHERE time > %(start)s AND time <= %(now)s
       UNION ALL
       SELECT gpu_uuid, host, gpu_index, time, {xid_only} FROM (
           SELECT gpu_uuid, host, gpu_index, time, xid_errors,
                  lag(xid_errors) OVER w AS previous, row_number() OVER w AS n
           FROM gpu_metrics
           WHERE time > %(xid_start)s AND time <= %(start)s AND xid_errors IS NOT NULL
           WINDOW w AS (PARTITION BY gpu_uuid ORDER BY time)) changes
       WHERE n = 1 OR xid_errors IS DISTINCT FROM previous
       ORDER BY gpu_uuid, time"""
).format(
    cols=sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
    xid_only=sql.SQL(", ").join(sql.Identifier(c) if c == "xid_errors" else sql.SQL("NULL") for c in COLUMNS),
)


def finding_json(finding: Finding) -> dict[str, Any]:
    return asdict(finding) | {"since": finding.since.isoformat()}


def finding_from_json(data: dict[str, Any]) -> Finding:
    return Finding(**(data | {"since": datetime.fromisoformat(data["since"])}))


def carry_since(conn: psycopg.Connection, results: list[GpuHealth]) -> None:
    """A finding that was already present in the previous evaluation keeps its earlier `since`, so a condition
    older than the loaded window (a DBE from yesterday) still says when it began."""
    previous = {
        (row["gpu_uuid"], f["rule"]): datetime.fromisoformat(f["since"])
        for row in conn.execute("SELECT gpu_uuid, findings FROM gpu_health WHERE findings <> '[]'::jsonb")
        for f in row["findings"]
    }
    for result in results:
        result.findings = [
            replace(f, since=min(f.since, previous[(result.gpu_uuid, f.rule)]))
            if (result.gpu_uuid, f.rule) in previous else f
            for f in result.findings
        ]


def save_health(conn: psycopg.Connection, results: list[GpuHealth]) -> None:
    """Upsert the latest status per GPU in one statement; `status_since` moves only when the status changes."""
    if not results:
        return
    conn.execute(
        """INSERT INTO gpu_health AS h (gpu_uuid, host, gpu_index, model, status, findings, last_seen, evaluated_at,
                                        status_since)
           SELECT u.*, u.evaluated_at FROM unnest(%s::text[], %s::text[], %s::int2[], %s::text[], %s::text[],
                                                  %s::jsonb[], %s::timestamptz[], %s::timestamptz[])
                AS u(gpu_uuid, host, gpu_index, model, status, findings, last_seen, evaluated_at)
           ON CONFLICT (gpu_uuid) DO UPDATE SET
               host = EXCLUDED.host, gpu_index = EXCLUDED.gpu_index, model = EXCLUDED.model,
               findings = EXCLUDED.findings, last_seen = EXCLUDED.last_seen, evaluated_at = EXCLUDED.evaluated_at,
               status_since = CASE WHEN h.status = EXCLUDED.status THEN h.status_since ELSE EXCLUDED.evaluated_at END,
               status = EXCLUDED.status""",
        (
            [r.gpu_uuid for r in results], [r.host for r in results], [r.gpu_index for r in results],
            [r.model for r in results], [r.status for r in results],
            [Jsonb([finding_json(f) for f in r.findings]) for r in results],
            [r.last_seen for r in results], [r.evaluated_at for r in results],
        ),
    )


_HEALTH_COLUMNS = "gpu_uuid, host, gpu_index, model, status, findings, last_seen, evaluated_at, status_since"


def _health_row(row: dict[str, Any]) -> GpuHealth:
    return GpuHealth(row["gpu_uuid"], row["host"], row["gpu_index"], row["model"], row["status"],
                     [finding_from_json(f) for f in row["findings"]], row["last_seen"], row["evaluated_at"],
                     row["status_since"])


def list_health(conn: psycopg.Connection, *, status: str | None = None, host: str | None = None,
                model: str | None = None) -> list[GpuHealth]:
    """`gpu_health` worst first, then by host and index; filters are exact (model: substring)."""
    rows = conn.execute(
        f"""SELECT {_HEALTH_COLUMNS} FROM gpu_health
            WHERE (%(status)s::text IS NULL OR status = %(status)s)
              AND (%(host)s::text IS NULL OR host = %(host)s)
              AND (%(model)s::text IS NULL OR model ILIKE '%%' || %(model)s || '%%')
            ORDER BY array_position(ARRAY['critical', 'unknown', 'warning', 'healthy'], status), host, gpu_index""",
        {"status": status, "host": host, "model": model},
    ).fetchall()
    return [_health_row(r) for r in rows]


def get_health(conn: psycopg.Connection, gpu_uuid: str) -> GpuHealth | None:
    """One GPU's row of `gpu_health`; None before its first evaluation."""
    row = conn.execute(f"SELECT {_HEALTH_COLUMNS} FROM gpu_health WHERE gpu_uuid = %s", (gpu_uuid,)).fetchone()
    return _health_row(row) if row else None
