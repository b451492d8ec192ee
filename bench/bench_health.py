"""Benchmark: one health evaluation of a 256-GPU fleet, and the fleet loader against per-GPU queries.

Ours: `load_fleet` reads every GPU's rule window (12 min of raw samples) plus the XID window (62 min) thinned in SQL
to the rows where the XID changes, in one ordered query; then the rules run in memory. Baseline, same run and
database: the straightforward loader, one query per GPU for every raw row of the XID window.
Also timed: the whole `evaluate_once` (load, rules, `gpu_health` upsert, alert reconciliation) and the rules alone.

    .venv/bin/python bench/bench_health.py [--hosts 32] [--gpus-per-host 8] [--minutes 70] [--repeat 5]

Uses DATABASE_URL when set (a scratch database is created there), else an embedded PostgreSQL in a temp dir.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.config import Settings  # noqa: E402
from backend.db import connect  # noqa: E402
from backend.db.migrate import migrate  # noqa: E402
from backend.health.evaluate import HealthPolicy, assess  # noqa: E402
from backend.health.evaluator import evaluate_once  # noqa: E402
from backend.health.history import GpuHistory, Sample  # noqa: E402
from backend.health.store import COLUMNS, load_fleet  # noqa: E402
from backend.telemetry.faults import FaultSpec  # noqa: E402
from backend.telemetry.simulator import Fleet  # noqa: E402
from backend.telemetry.sink.partitions import ensure_partitions  # noqa: E402


def fill(settings: Settings, hosts: int, gpus_per_host: int, minutes: int, end: datetime) -> int:
    start = end - timedelta(minutes=minutes)
    faults = [FaultSpec(k, onset=timedelta(minutes=m)) for k, m in
              (("thermal", 5), ("ecc", 1), ("xid79", 10), ("nvlink", 10), ("power_brake", 50))]
    fleet = Fleet(hosts, gpus_per_host, seed=7, start=start, faults=faults)
    columns = ("time", "gpu_uuid", "host", "gpu_index", *COLUMNS)
    copy = sql.SQL("COPY gpu_metrics ({}) FROM STDIN").format(sql.SQL(", ").join(map(sql.Identifier, columns)))
    count = 0
    last_seen: dict[str, datetime] = {}
    with connect(settings, autocommit=True) as conn:
        ensure_partitions(conn, {start.date(), end.date()})
        with conn.cursor() as cur, cur.copy(copy) as out:
            for s in fleet.samples(end=end, interval=timedelta(seconds=10)):
                out.write_row((s.ts, s.gpu_uuid, s.host, s.gpu_index, *(s.metrics.get(c) for c in COLUMNS)))
                last_seen[s.gpu_uuid] = s.ts
                count += 1
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO gpus VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [(g.uuid, g.host, g.index, g.model.name, g.model.driver, Jsonb({}), start, last_seen[g.uuid])
                 for g in fleet.gpus])
        conn.execute("ANALYZE")
    return count


def per_gpu_loader(conn: psycopg.Connection, now: datetime, window: timedelta) -> list[GpuHistory]:
    """The baseline: one query per GPU."""
    query = sql.SQL("SELECT time, {} FROM gpu_metrics WHERE gpu_uuid = %s AND time > %s AND time <= %s "
                    "ORDER BY time").format(sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))
    out = []
    for g in conn.execute("SELECT gpu_uuid, host, gpu_index, model FROM gpus ORDER BY host, gpu_index").fetchall():
        with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
            cur.execute(query, (g["gpu_uuid"], now - window, now))
            samples = [Sample(t, dict(zip(COLUMNS, values, strict=True))) for t, *values in cur]
        out.append(GpuHistory(g["gpu_uuid"], g["host"], g["gpu_index"], g["model"], samples))
    return out


def timed(fn, repeat: int) -> tuple[float, float]:
    runs = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - began)
    return statistics.median(runs), max(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=32)
    parser.add_argument("--gpus-per-host", type=int, default=8)
    parser.add_argument("--minutes", type=int, default=70)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        server = None
        admin_url = os.environ.get("DATABASE_URL")
        if not admin_url:
            from backend.embedded.postgres import EmbeddedPostgres

            server = EmbeddedPostgres(Path(tmp) / "pg", keep_data=False)
            admin_url = server.start()
        name = f"bench_health_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            settings = Settings(database_url=psycopg.conninfo.make_conninfo(admin_url, dbname=name),
                                db_profile="postgres")
            migrate(settings)
            now = datetime.now(UTC).replace(microsecond=0)
            began = time.perf_counter()
            rows = fill(settings, args.hosts, args.gpus_per_host, args.minutes, now)
            print(f"loaded {rows} samples of {args.hosts * args.gpus_per_host} GPUs in "
                  f"{time.perf_counter() - began:.1f} s")
            policy = HealthPolicy.from_settings(settings)
            with connect(settings, autocommit=True) as conn:
                ours = timed(lambda: load_fleet(conn, now, policy.load_window, policy.xid_load_window), args.repeat)
                naive = timed(lambda: per_gpu_loader(conn, now, policy.xid_load_window), args.repeat)
                thinned = load_fleet(conn, now, policy.load_window, policy.xid_load_window)
                full = per_gpu_loader(conn, now, policy.xid_load_window)
            rules = timed(lambda: [assess(h, now, policy) for h in thinned], args.repeat)
            rules_full = timed(lambda: [assess(h, now, policy) for h in full], args.repeat)
            whole = timed(lambda: evaluate_once(settings, now=now), args.repeat)
            summary = evaluate_once(settings, now=now)
            print(f"fleet loader, one query:     median {ours[0] * 1000:7.0f} ms  max {ours[1] * 1000:7.0f} ms")
            print(f"baseline, one query per GPU: median {naive[0] * 1000:7.0f} ms  max {naive[1] * 1000:7.0f} ms "
                  f"-> ours {naive[0] / ours[0]:.1f}x faster")
            print(f"rules, thinned XID history:  median {rules[0] * 1000:7.0f} ms  max {rules[1] * 1000:7.0f} ms")
            print(f"rules, full hour of samples: median {rules_full[0] * 1000:7.0f} ms  "
                  f"max {rules_full[1] * 1000:7.0f} ms -> {rules_full[0] / rules[0]:.1f}x")
            print(f"evaluate_once (everything):  median {whole[0] * 1000:7.0f} ms  max {whole[1] * 1000:7.0f} ms")
            print(f"statuses: {summary.healthy} healthy, {summary.warning} warning, {summary.critical} critical, "
                  f"{summary.unknown} unknown")
        finally:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
