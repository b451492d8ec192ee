"""Benchmark: the query layer's two hot views against the same answers computed from the raw table, same run.

Fleet: 256 GPUs × 24 h at 10 s (2.2 M samples, 256 × 8640), stored through the sink's own write path (binary COPY
into a stage, then INSERT … SELECT into `gpu_metrics` with the 1m/1h rollups computed by INSERT … SELECT … GROUP BY
in the same statement), so tables, rollups and the `gpus` inventory are exactly what production holds.

1. Fleet overview (every GPU: status + latest sample). Ours: `fleet_overview` — `gpus.last_seen` plus one index
   lookup per GPU (LATERAL … ORDER BY time DESC LIMIT 1). Baseline: DISTINCT ON (gpu_uuid) over the raw table.
2. 24 h GPU detail (latest sample of every metric + 1-minute series). Ours: `gpu_detail` +
   `gpu_timeseries(resolution=auto → 1m)` from the rollup. Baseline: the same series aggregated from the raw
   samples with GROUP BY minute. Two requests: what the GPU Detail page asks for (its 15 charted and event
   metrics, bucket values only: `bands=False`), and all 16 gauges with avg/min/max (the API's widest answer).
3. Spend for the Overview (today's spend + month-end projection = month-to-date by day + trailing 24 h). Ours:
   `cost_summary` + `month_projection` (complete hours from the precomputed GPU-minutes `gpu_minutes_1h`, the rest
   from the 1-minute rollups, counted per GPU, day and price stretch, then priced). Baselines: the same summaries
   from one priced row per GPU-minute (join and numeric sum per minute), and "before": the query as it was before
   the precomputed GPU-minutes (every minute from the rollups, tests/spend_reference.py), cold (the first call on a
   new connection, as a fresh console session makes it) and warm.

Both sides return the same Python objects and the bench checks the answers match before timing them.

    .venv/bin/python bench/bench_queries.py [--gpus 256] [--hours 24] [--interval 10] [--runs 40]

Uses DATABASE_URL when set (a scratch database is created there), else an embedded PostgreSQL in a temp dir.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import dict_row, tuple_row

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.config import Settings  # noqa: E402
from backend.costs.projection import month_projection  # noqa: E402
from backend.costs.spend import CostSummary, _as_total, _key_sql, _row, cost_summary  # noqa: E402
from backend.db.migrate import migrate  # noqa: E402
from backend.queries.catalog import parse_metrics, value_column  # noqa: E402
from backend.queries.fleet import SUMMARY_METRICS, FleetPage, GpuSummary, fleet_overview, gpu_detail  # noqa: E402
from backend.queries.timeseries import (  # noqa: E402
    MINUTE_MAX_SPAN,
    RAW_MAX_SPAN,
    SeriesPoint,
    gpu_timeseries,
    points_from_rows,
)
from backend.telemetry.fields import COLUMNS, FIELDS  # noqa: E402
from backend.telemetry.sink.batch import Batch, GpuSeen  # noqa: E402
from backend.telemetry.sink.rollup_worker import materialize  # noqa: E402
from backend.telemetry.sink.writer import PostgresWriter  # noqa: E402
from tests.spend_reference import reference_spend  # noqa: E402

GAUGES = [f.column for f in FIELDS if f.kind == "gauge"]
PAGE_METRICS = ["gpu_temp", "memory_temp", "power_usage", "gpu_util", "mem_copy_util", "enc_util", "dec_util",
                "fb_used", "fb_free", "sm_clock", "mem_clock", "ecc_sbe_vol_total", "ecc_dbe_vol_total", "xid_errors",
                "clocks_event_reasons"]
"""What pages/gpu_detail.py charts (CHARTS + EVENT_METRICS); it draws bucket values, never the min/max bands."""
MODELS = ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA L4")
STALE_AFTER = timedelta(seconds=120)


# -- data ---------------------------------------------------------------------------------------------------------

def _metrics(k: np.ndarray, g: np.ndarray, interval: int) -> list[list]:
    """Plausible values for sample index k of GPU g, one python list per column of `COLUMNS`."""
    rng = np.random.default_rng(int(k[0]) + 1)
    n = len(k)
    phase = np.sin((k * interval / 3600.0 + g) / 3.0)
    util = np.clip(60 + 40 * phase + rng.normal(0, 5, n), 0, 100) * (g % 10 != 0)  # every 10th GPU idles
    power = 80 + 6 * util + rng.normal(0, 10, n)
    temp = 35 + 0.45 * util + rng.normal(0, 1, n)
    seconds = k * interval
    cols: dict[str, np.ndarray] = {
        "gpu_temp": temp, "memory_temp": temp + 6, "power_usage": power,
        "total_energy_consumption": (seconds * 400_000 + g * 10**9).astype(np.int64),
        "gpu_util": util, "mem_copy_util": util / 2, "enc_util": util / 10, "dec_util": util / 10,
        "fb_used": 20_000 + 500 * util, "fb_free": 81_559 - (20_000 + 500 * util),
        "sm_clock": np.where(util > 5, 1980.0, 345.0), "mem_clock": np.full(n, 2619.0),
        "pcie_replay_counter": np.zeros(n, np.int64), "xid_errors": np.zeros(n, np.int64),
        "ecc_sbe_vol_total": np.where(g % 37 == 0, seconds // 3600, 0).astype(np.int64),
        "ecc_dbe_vol_total": np.zeros(n, np.int64),
        "ecc_sbe_agg_total": np.where(g % 37 == 0, 100 + seconds // 3600, 0).astype(np.int64),
        "ecc_dbe_agg_total": np.zeros(n, np.int64),
        "clocks_event_reasons": np.where(util < 5, 0x1, np.where(temp > 78, 0x20, 0)).astype(np.int64),
        "power_violation": (seconds * 1000 * (g % 50 == 0)).astype(np.int64),
        "thermal_violation": (seconds * 2000 * (g % 64 == 0)).astype(np.int64),
        "gr_engine_active": util / 100, "sm_active": util / 110, "pipe_tensor_active": util / 150,
        "dram_active": util / 200, "pcie_tx_bytes": util * 1e8, "pcie_rx_bytes": util * 2e8,
    }
    return [cols[c].tolist() if c in cols else [0] * n for c in COLUMNS]


def load(settings: Settings, gpus: int, hours: int, interval: int, end: datetime) -> tuple[int, float]:
    """Store the fleet's samples through the sink writer; returns (rows, seconds)."""
    per_gpu = hours * 3600 // interval
    start = end - timedelta(seconds=per_gpu * interval)
    uuids = [f"GPU-{uuid.UUID(int=i + 1)}" for i in range(gpus)]
    hosts = [f"gpu-node-{i // 8:03d}" for i in range(gpus)]
    chunk = 1800 // interval  # half an hour of samples per batch
    writer = PostgresWriter(settings)
    began, rows = time.perf_counter(), 0
    try:
        for first in range(0, per_gpu, chunk):
            ks = np.repeat(np.arange(first, min(first + chunk, per_gpu)), gpus)
            gs = np.tile(np.arange(gpus), len(ks) // gpus)
            times = [start + timedelta(seconds=int(k) * interval) for k in range(first, first + len(ks) // gpus)]
            batch = Batch()
            batch.metric_rows = list(zip(
                [t for t in times for _ in range(gpus)], uuids * len(times), hosts * len(times),
                [i % 8 for i in range(gpus)] * len(times), *_metrics(ks, gs, interval), [None] * len(ks),
                strict=True))
            batch.gpus = {u: GpuSeen(hosts[i], i % 8, MODELS[i % 3], "550.54.15",
                                     {"datacenter": f"dc-{i // 128}", "team": f"team-{i % 4}"}, times[0], times[-1])
                          for i, u in enumerate(uuids)}
            writer.write(batch)
            rows += len(batch.metric_rows)
            print(f"\r  loaded {rows:,} / {per_gpu * gpus:,} samples", end="", file=sys.stderr, flush=True)
    finally:
        writer.close()
    print(file=sys.stderr)
    while materialize(settings).gpu_hours:  # as a running sink's rollup worker would, pass after pass: stored
        pass                                # rollups, then every complete hour's precomputed GPU-minutes
    return rows, time.perf_counter() - began


# -- baselines: the same answers from the raw table ----------------------------------------------------------------

def fleet_from_raw(conn: psycopg.Connection, now: datetime) -> FleetPage:
    cols = sql.SQL(", ").join(map(sql.Identifier, SUMMARY_METRICS))
    fresh_after = now - STALE_AFTER
    rows = conn.execute(sql.SQL(
        """SELECT g.*, CASE WHEN g.last_seen < %(fresh)s THEN 'unknown' ELSE coalesce(h.status, 'unknown') END
                  AS status, l.*
           FROM gpus g LEFT JOIN gpu_health h ON h.gpu_uuid = g.gpu_uuid
           LEFT JOIN (SELECT DISTINCT ON (gpu_uuid) gpu_uuid AS latest_uuid, time AS sample_time, {cols}
                      FROM gpu_metrics ORDER BY gpu_uuid, time DESC) l ON l.latest_uuid = g.gpu_uuid
           ORDER BY g.host, g.gpu_index, g.gpu_uuid LIMIT 1000""").format(cols=cols), {"fresh": fresh_after}).fetchall()
    items = [GpuSummary(r["gpu_uuid"], r["host"], r["gpu_index"], r["model"], r["driver"], r["labels"],
                        r["first_seen"], r["last_seen"], r["last_seen"] < fresh_after, r["status"], r["sample_time"],
                        {c: r[c] for c in SUMMARY_METRICS}) for r in rows]
    return FleetPage(items, len(items), 1000, 0)


def series_sql() -> tuple[str, str]:
    """(rollup, raw) queries for the 16-gauge 1-minute series with avg/min/max, columns in the same order."""
    blocks = [("avg", "_avg"), ("min", "_min"), ("max", "_max")]
    rollup = ", ".join(f"{c}{suffix}" for _, suffix in blocks for c in GAUGES)
    raw = ", ".join(f"{agg}({c})" for agg, _ in blocks for c in GAUGES)
    return (f"SELECT bucket, {rollup} FROM gpu_metrics_1m WHERE gpu_uuid = %s AND bucket > %s AND bucket < %s "
            "ORDER BY bucket",
            f"SELECT date_trunc('minute', time) AS bucket, {raw} FROM gpu_metrics "
            "WHERE gpu_uuid = %s AND time >= %s AND time < %s GROUP BY 1 ORDER BY 1")


def page_series_sql() -> str:
    """The raw-table twin of the page's request: each metric's bucket value as the rollup defines it."""
    aggregate = {"avg": "avg", "or": "bit_or", "max": "max"}
    cols = ", ".join(f"{aggregate[value_column(f).rsplit('_', 1)[1]]}({f.column})" for f in parse_metrics(PAGE_METRICS))
    return (f"SELECT date_trunc('minute', time) AS bucket, {cols} FROM gpu_metrics "
            "WHERE gpu_uuid = %s AND time >= %s AND time < %s GROUP BY 1 ORDER BY 1")


PRICED_MINUTES = """
    SELECT r.bucket, r.gpu_uuid, r.host, g.model, g.labels, r.gpu_util_avg, p.usd_per_gpu_hour AS price
    FROM gpu_metrics_1m r
    JOIN gpus g ON g.gpu_uuid = r.gpu_uuid
    LEFT JOIN gpu_prices p
      ON lower(p.gpu_model) = lower(g.model)
     AND p.pricing_kind = CASE WHEN g.labels->>'pricing_kind' IN ('on_demand', 'spot', 'committed')
                               THEN g.labels->>'pricing_kind' ELSE 'on_demand' END
     AND p.effective_from <= r.bucket AND (p.effective_to IS NULL OR r.bucket < p.effective_to)
    WHERE r.bucket >= %(start)s AND r.bucket < %(end)s AND r.samples > 0"""


def spend_per_minute(conn: psycopg.Connection, start: datetime, end: datetime, group_by: str) -> CostSummary:
    """`cost_summary` as first written: every GPU-minute joined to its price and summed in numeric."""
    key, extra = _key_sql(group_by)
    key = sql.SQL("to_char(date_trunc('day', bucket, 'UTC'), 'YYYY-MM-DD')") if group_by == "day" else key
    rows = conn.execute(sql.SQL(
        """WITH minutes AS ({minutes})
           SELECT key, count(DISTINCT gpu_uuid) AS gpus, count(*) AS minutes,
                  count(*) FILTER (WHERE gpu_util_avg < %(idle)s) AS idle_minutes,
                  count(*) FILTER (WHERE price IS NULL) AS unpriced_minutes,
                  coalesce(sum(price), 0) / 60 AS cost,
                  coalesce(sum(price) FILTER (WHERE gpu_util_avg < %(idle)s), 0) / 60 AS idle_cost
           FROM (SELECT {key} AS key, * FROM minutes) m
           GROUP BY GROUPING SETS ((key), ()) ORDER BY grouping(key), cost DESC, key""").format(
        minutes=sql.SQL(PRICED_MINUTES), key=key), {"start": start, "end": end, "idle": 5.0, **extra}).fetchall()
    grouped = [_row(r) for r in rows if r["key"] is not None]
    total = next((_row(r) for r in rows if r["key"] is None), None)
    return CostSummary(start, end, group_by, 5.0, grouped, _as_total(total))


def overview_spend(conn: psycopg.Connection, now: datetime) -> tuple:
    """What the Overview's spend panel computes (pages/overview.py): today's spend and the month projection."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = month_projection(conn, now)
    return cost_summary(conn, midnight, now, group_by="total").total, month.daily, month.run_rate_usd_per_day


def overview_spend_per_minute(conn: psycopg.Connection, now: datetime) -> tuple:
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    daily = sorted(spend_per_minute(conn, now.replace(day=1, hour=0, minute=0, second=0, microsecond=0), now,
                                    "day").rows, key=lambda r: r.key)
    window = spend_per_minute(conn, now - timedelta(days=1), now, "total").total
    return spend_per_minute(conn, midnight, now, "total").total, daily, window.cost_usd


def spend_before(conn: psycopg.Connection, now: datetime) -> tuple:
    """`overview_spend` with the query as it was before the precomputed GPU-minutes."""
    with reference_spend():
        return overview_spend(conn, now)


def cold(url: str, fn: Callable[[psycopg.Connection], object], runs: int) -> tuple[float, float]:
    """(p50, max) in ms of `fn`'s first call on a new connection (connecting not counted), over `runs` connections."""
    samples = []
    for _ in range(runs):
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            began = time.perf_counter()
            fn(conn)
            samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples), max(samples)


def fetch(conn: psycopg.Connection, query: str, params: tuple) -> list[tuple]:
    with conn.cursor(binary=True, row_factory=tuple_row) as cur:
        return cur.execute(query, params).fetchall()


def series_from_raw(conn: psycopg.Connection, gpu: str, start: datetime, end: datetime) -> list[SeriesPoint]:
    """The 1-minute series aggregated from raw samples, loaded exactly like ours (binary, same point builder)."""
    return points_from_rows(fetch(conn, series_sql()[1], (gpu, start, end)), GAUGES, bands=True)


# -- timing --------------------------------------------------------------------------------------------------------

def timed(fn: Callable[[int], object], runs: int) -> tuple[float, float]:
    """(p50, p95) in ms over `runs` calls after two warm-up calls."""
    fn(0)
    fn(1)
    samples = []
    for i in range(runs):
        began = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, math.ceil(0.95 * len(samples)) - 1)]


def same_points(a: list[SeriesPoint], b: list[SeriesPoint]) -> bool:
    def close(x: dict, y: dict) -> bool:
        return all(math.isclose(x[k], y[k], rel_tol=1e-9, abs_tol=1e-9) for k in x)
    return len(a) == len(b) and all(p.time == q.time and close(p.values, q.values) and close(p.min, q.min)
                                    and close(p.max, q.max) for p, q in zip(a, b, strict=True))


def same_values(a: list[SeriesPoint], b: list[SeriesPoint]) -> bool:
    return len(a) == len(b) and all(
        p.time == q.time and all(math.isclose(p.values[k], q.values[k], rel_tol=1e-9, abs_tol=1e-9) for k in p.values)
        for p, q in zip(a, b, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=256)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    if not RAW_MAX_SPAN < timedelta(hours=args.hours) <= MINUTE_MAX_SPAN:
        parser.error(f"--hours must be over {RAW_MAX_SPAN / timedelta(hours=1):g} and at most "
                     f"{MINUTE_MAX_SPAN / timedelta(hours=1):g}: the series checked and timed is the one the console "
                     "reads from the 1-minute rollup, and other ranges are served at another resolution")

    server = None
    if os.environ.get("DATABASE_URL"):
        admin_url = os.environ["DATABASE_URL"]
    else:
        from backend.embedded.postgres import EmbeddedPostgres

        scratch = Path(tempfile.mkdtemp(prefix="bench-queries-"))
        server = EmbeddedPostgres(scratch / "data", keep_data=False)
        admin_url = server.start()
    name = f"bench_queries_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    settings = Settings(database_url=url, db_profile="postgres")
    try:
        migrate(settings)
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        rows, seconds = load(settings, args.gpus, args.hours, args.interval, end)
        print(f"loaded {rows:,} samples in {seconds:.1f} s ({rows / seconds:,.0f} samples/s, sink write path "
              "incl. 1m/1h rollups)")
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            conn.execute("INSERT INTO gpu_health (gpu_uuid, host, gpu_index, model, status, evaluated_at, "
                         "status_since) SELECT gpu_uuid, host, gpu_index, model, CASE WHEN gpu_index = 7 THEN "
                         "'warning' ELSE 'healthy' END, %s, %s FROM gpus", (end, end))
            conn.execute("VACUUM ANALYZE")
            gpus = [r["gpu_uuid"] for r in conn.execute("SELECT gpu_uuid FROM gpus ORDER BY gpu_uuid")]
            start = end - timedelta(hours=args.hours)

            ours_fleet = fleet_overview(conn, limit=1000, now=end, stale_after=STALE_AFTER)
            raw_fleet = fleet_from_raw(conn, end)
            assert ours_fleet.items == raw_fleet.items and len(ours_fleet.items) == args.gpus, "fleet answers differ"
            probe = gpus[len(gpus) // 2]
            ours_series = gpu_timeseries(conn, probe, start, end, GAUGES, resolution="auto")
            assert ours_series.resolution == "1m", ours_series.resolution
            assert same_points(ours_series.points, series_from_raw(conn, probe, start, end)), "series answers differ"
            page_raw_sql = page_series_sql()
            ours_page = gpu_timeseries(conn, probe, start, end, PAGE_METRICS, resolution="auto", bands=False)
            raw_page = points_from_rows(fetch(conn, page_raw_sql, (probe, start, end)), PAGE_METRICS, bands=False)
            assert same_values(ours_page.points, raw_page), "page series answers differ"
            assert overview_spend(conn, end) == overview_spend_per_minute(conn, end), "spend answers differ"
            assert overview_spend(conn, end) == spend_before(conn, end), "spend answers differ from before"
            precomputed = conn.execute("SELECT count(*) AS n FROM gpu_minutes_1h_trusted").fetchone()["n"]

            fleet = timed(lambda i: fleet_overview(conn, limit=1000, now=end, stale_after=STALE_AFTER), args.runs)
            fleet_raw = timed(lambda i: fleet_from_raw(conn, end), max(5, args.runs // 4))

            def detail(i: int) -> None:
                gpu = gpus[i % len(gpus)]
                gpu_detail(conn, gpu, now=end, stale_after=STALE_AFTER)
                gpu_timeseries(conn, gpu, start, end, GAUGES, resolution="auto")

            def detail_raw(i: int) -> None:
                gpu = gpus[i % len(gpus)]
                gpu_detail(conn, gpu, now=end, stale_after=STALE_AFTER)
                series_from_raw(conn, gpu, start, end)

            def page(i: int) -> None:
                gpu = gpus[i % len(gpus)]
                gpu_detail(conn, gpu, now=end, stale_after=STALE_AFTER)
                gpu_timeseries(conn, gpu, start, end, PAGE_METRICS, resolution="auto", bands=False)

            def page_raw(i: int) -> None:
                gpu = gpus[i % len(gpus)]
                gpu_detail(conn, gpu, now=end, stale_after=STALE_AFTER)
                points_from_rows(fetch(conn, page_raw_sql, (gpu, start, end)), PAGE_METRICS, bands=False)

            det = timed(detail, args.runs)
            det_raw = timed(detail_raw, args.runs)
            det_page = timed(page, args.runs)
            det_page_raw = timed(page_raw, args.runs)
            spend_runs = max(5, args.runs // 4)
            spend = timed(lambda i: overview_spend(conn, end), spend_runs)
            spend_raw = timed(lambda i: overview_spend_per_minute(conn, end), spend_runs)
            spend_old = timed(lambda i: spend_before(conn, end), spend_runs)
            spend_cold_old, spend_cold = [], []
            for _ in range(2):  # alternated, so both sides meet the same machine load
                spend_cold_old.append(cold(url, lambda c: spend_before(c, end), spend_runs))
                spend_cold.append(cold(url, lambda c: overview_spend(c, end), spend_runs))
            rollup_sql, raw_sql = series_sql()
            minute_before = start - timedelta(minutes=1)
            sql_only = timed(lambda i: fetch(conn, rollup_sql, (gpus[i % len(gpus)], minute_before, end)), args.runs)
            sql_only_raw = timed(lambda i: fetch(conn, raw_sql, (gpus[i % len(gpus)], start, end)), args.runs)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if server is not None:
            server.stop()
            shutil.rmtree(scratch, ignore_errors=True)

    print(f"\n{args.gpus} GPUs × {args.hours} h at {args.interval} s = {rows:,} samples; p50 / p95 over "
          f"{args.runs} runs (fleet baseline and spend: {max(5, args.runs // 4)} runs)")
    print("| view | ours p50 / p95 (ms) | from raw p50 / p95 (ms) | speed-up (p95) |")
    print("| --- | --- | --- | --- |")
    for title, ours, raw in (("fleet overview (all GPUs)", fleet, fleet_raw),
                             (f"{args.hours} h GPU detail as the page asks (15 metrics, 1 m, values)", det_page,
                              det_page_raw),
                             (f"{args.hours} h GPU detail (16 gauges, 1 m, avg/min/max)", det, det_raw),
                             ("  of which the series query alone (SQL + binary transfer)", sql_only, sql_only_raw),
                             ("Overview spend (today + month projection)", spend, spend_raw)):
        print(f"| {title} | {ours[0]:.1f} / {ours[1]:.1f} | {raw[0]:.1f} / {raw[1]:.1f} | {raw[1] / ours[1]:.1f}× |")
    print(f"\nOverview spend before / after the precomputed GPU-minutes ({precomputed} precomputed hours; cold: first "
          f"call on a new connection, p50 / max of {spend_runs}, two alternated rounds; warm: p50 / p95)")
    print("| Overview spend (today + month projection) | after (ms) | before (ms) | speed-up (p50) |")
    print("| --- | --- | --- | --- |")
    for title, after, before in [*((f"cold, round {i + 1}", a, b) for i, (a, b) in
                                   enumerate(zip(spend_cold, spend_cold_old, strict=True))),
                                 ("warm", spend, spend_old)]:
        print(f"| {title} | {after[0]:.1f} / {after[1]:.1f} | {before[0]:.1f} / {before[1]:.1f} | "
              f"{before[0] / after[0]:.1f}× |")


if __name__ == "__main__":
    main()
