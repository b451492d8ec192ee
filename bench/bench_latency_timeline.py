"""Benchmark: where the produce → visible tail comes from. One latency run (`bench_sink.bench_latency`, placed
across a minute's end so that the minute's rollup pass falls inside it) with, per second of arrival: rows, p50 and
max latency, WAL written, and what the database was doing beside the sink's inserts (the rollup worker's
recomputation, a vacuum or analyze, a checkpoint), polled every 0.25 s from a connection of its own.

    .venv/bin/python bench/bench_latency_timeline.py [--rate 20000] [--seconds 40] [--tree PATH]

`--tree` measures the sink of another checkout (e.g. `git worktree add /tmp/old <rev>`) with this harness.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_sink

_ACTIVE = """
SELECT coalesce(a.query, '') AS query, a.backend_type, p.relid::regclass::text AS vacuuming
FROM pg_stat_activity a LEFT JOIN pg_stat_progress_vacuum p ON p.pid = a.pid
WHERE a.state = 'active' AND a.pid <> pg_backend_pid()
"""
_WAL_AND_CHECKPOINTS = ("SELECT pg_current_wal_lsn() - '0/0' AS wal, "
                        "(SELECT num_timed + num_requested FROM pg_stat_checkpointer) AS checkpoints")


class Watcher:
    """Per second: the database's other work seen while polling, the WAL position and the checkpoint count."""

    def __init__(self, db_url: str) -> None:
        self._url = db_url  # the measured database's own: vacuumed tables are named
        self.doing: dict[datetime, set[str]] = defaultdict(set)
        self.wal: dict[datetime, tuple[float, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with psycopg.connect(self._url, autocommit=True) as conn:
            while not self._stop.is_set():
                second = datetime.now(UTC).replace(microsecond=0)
                for query, backend, vacuuming in conn.execute(_ACTIVE):
                    if vacuuming:
                        self.doing[second].add(f"vacuum {vacuuming}")
                    elif "gpu_metrics_1m_state" in query and query.lstrip().startswith("INSERT"):
                        self.doing[second].add("rollup pass")
                    elif backend == "autovacuum worker" or query.lower().startswith(("analyze", "autovacuum")):
                        self.doing[second].add(query[:40] or backend)
                wal, checkpoints = conn.execute(_WAL_AND_CHECKPOINTS).fetchone()
                self.wal[second] = (float(wal), int(checkpoints))
                time.sleep(0.25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--tree", type=Path, default=bench_sink.ROOT)
    args = parser.parse_args()
    with bench_sink.stack() as (admin_url, bootstrap):
        databases = bench_sink.Databases(admin_url)
        db_url = databases.url(databases.create())
        with Watcher(db_url) as watcher:
            result = bench_sink.bench_latency(db_url, bootstrap, args.rate, args.seconds, rollups=True, tree=args.tree)
        print(f"p50 {result['p50_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, max {result['max_ms']:.0f} ms; "
              f"minute's rollup {result['rollup_s']:.1f} s after its end")
        with psycopg.connect(db_url) as conn:
            seconds = conn.execute(
                "SELECT date_trunc('second', ingested_at) AS s, count(*), percentile_cont(0.5) WITHIN GROUP "
                "(ORDER BY ingested_at - time), max(ingested_at - time) FROM gpu_metrics GROUP BY 1 ORDER BY 1"
            ).fetchall()
    print(f"{'second':<8}{'rows':>7}{'p50 ms':>8}{'max ms':>8}{'WAL MB':>8}  checkpoints  also running")
    previous = None
    for second, rows, p50, worst in seconds:
        wal = watcher.wal.get(second)
        written = (wal[0] - previous[0]) / 1e6 if wal and previous else float("nan")
        previous = wal or previous
        print(f"{second:%M:%S}  {rows:>7}{p50.total_seconds() * 1000:>8.0f}{worst.total_seconds() * 1000:>8.0f}"
              f"{written:>8.1f}  {wal[1] if wal else '':>11}  {', '.join(sorted(watcher.doing.get(second, ())))}")


if __name__ == "__main__":
    sys.exit(main())
