"""Benchmark: the Parquet archive of one UTC day against PostgreSQL's own COPY, same run, same data.

Data: the simulator's fleet (4 hosts × 8 GPUs at 10 s, with its faults) for the last 48 h, stored through the sink's
validation and writer (`backend.demo.store_history`), so values and NULLs are what production holds. The bench
works on yesterday, a whole UTC day (32 × 8,640 = 276,480 samples).

1. Export: `archive_days` (COPY … CSV → Arrow → zstd Parquet per host, upload to a local directory, read back and
   verify, record) versus `COPY (SELECT * … the day) TO STDOUT` into a file (no conversion, no verification).
2. Size: Parquet bytes per sample versus the day's partition in PostgreSQL (heap, and heap + indexes + TOAST, what
   dropping it frees) and versus the COPY text dump.
3. Restore: `restore_day` (read + SHA-256 check + Parquet decode + COPY … CSV into gpu_metrics_restored, replacing
   the day) versus `COPY … FROM STDIN` of the text dump into a table of the same shape and keys.

    .venv/bin/python bench/bench_archive.py [--hosts 4] [--gpus-per-host 8] [--runs 3]

Uses DATABASE_URL when set (a scratch database is created there), else an embedded PostgreSQL in a temp dir.
"""

from __future__ import annotations

import argparse
import itertools
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
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from psycopg import sql
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.config import Settings  # noqa: E402
from backend.db.migrate import migrate  # noqa: E402
from backend.demo import store_history  # noqa: E402
from backend.identity.principal import SYSTEM  # noqa: E402
from backend.telemetry import archive  # noqa: E402
from backend.telemetry.sink.partitions import partition_name  # noqa: E402


def timed(action: Callable[[], object], runs: int) -> list[float]:
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - started)
    return seconds


def copy_out(url: str, day_start: datetime, dump: Path) -> None:
    with psycopg.connect(url) as conn, dump.open("wb") as out, conn.cursor().copy(
            sql.SQL("COPY (SELECT * FROM gpu_metrics WHERE time >= {} AND time < {}) TO STDOUT").format(
                sql.Literal(day_start), sql.Literal(day_start + timedelta(days=1)))) as copy:
        for chunk in copy:
            out.write(chunk)


def copy_in(url: str, dump: Path) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE copy_baseline")
        with conn.cursor().copy("COPY copy_baseline FROM STDIN") as copy, dump.open("rb") as source:
            while chunk := source.read(1 << 20):
                copy.write(chunk)


def gpu_hour_bytes(path: Path) -> int:
    """The same file re-encoded with one row group per GPU-hour (the alternative the archive did not take)."""
    table = pq.read_table(path).sort_by([("gpu_uuid", "ascending"), ("time", "ascending")])
    hours = pc.floor_temporal(table["time"], unit="hour").cast(pa.int64()).to_numpy()
    gpus = np.unique(table["gpu_uuid"].to_numpy(zero_copy_only=False), return_inverse=True)[1]
    cuts = [0, *(np.flatnonzero((np.diff(hours) != 0) | (np.diff(gpus) != 0)) + 1).tolist(), len(hours)]
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, table.schema, compression="zstd") as writer:
        for start, stop in itertools.pairwise(cuts):
            writer.write_table(table.slice(start, stop - start), row_group_size=stop - start)
    return len(sink.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--gpus-per-host", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    server, scratch = None, Path(tempfile.mkdtemp(prefix="bench-archive-"))
    if os.environ.get("DATABASE_URL"):
        admin_url = os.environ["DATABASE_URL"]
    else:
        from backend.embedded.postgres import EmbeddedPostgres

        server = EmbeddedPostgres(scratch / "data", keep_data=False)
        admin_url = server.start()
    name = f"bench_archive_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    settings = Settings(database_url=url, db_profile="postgres", archive_url=str(scratch / "archive"))
    try:
        migrate(settings)
        started = time.perf_counter()
        stored = store_history(settings, hosts=args.hosts, gpus_per_host=args.gpus_per_host,
                               history=timedelta(hours=48), interval=timedelta(seconds=10))
        print(f"loaded {stored:,} samples in {time.perf_counter() - started:.0f} s (simulator → sink writer)")
        day = datetime.now(UTC).date() - timedelta(days=1)
        day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            conn.execute("VACUUM ANALYZE gpu_metrics")
            conn.execute("CREATE TABLE copy_baseline (LIKE gpu_metrics_restored INCLUDING ALL)")
            stats = archive.day_stats(conn, day)
            sizes = conn.execute("SELECT pg_relation_size(%(p)s::regclass) AS heap, pg_total_relation_size("
                                 "%(p)s::regclass) AS total", {"p": partition_name(day)}).fetchone()
            heap, total = sizes["heap"], sizes["total"]
        rows = stats.rows
        dump = scratch / "day.copy"

        export_base = timed(lambda: copy_out(url, day_start, dump), args.runs)
        export_ours = timed(lambda: archive.archive_days(SYSTEM, [stats], settings), args.runs)
        (record,) = [r for r in archive.list_archives(SYSTEM, settings) if r.day == day]
        assert record.verified and record.rows == rows, record.error
        restore_base = timed(lambda: copy_in(url, dump), args.runs)
        restore_ours = timed(lambda: archive.restore_day(SYSTEM, day, settings), args.runs)

        def rate(seconds: list[float]) -> float:
            return rows / statistics.median(seconds)

        print(f"\n{day}: {rows:,} samples, {len(record.files)} files, {args.runs} runs each (median)")
        print("| step | ours (rows/s) | COPY baseline (rows/s) | ours / baseline |")
        print("| --- | --- | --- | --- |")
        for step, ours, base in (("export (+ verify)", export_ours, export_base),
                                 ("restore", restore_ours, restore_base)):
            print(f"| {step} | {rate(ours):,.0f} | {rate(base):,.0f} | {rate(ours) / rate(base):.2f}× |")
        print("\n| stored as | bytes/sample | vs Parquet |")
        print("| --- | --- | --- |")
        for label, size in (("Parquet (zstd, hourly row groups)", record.bytes),
                            ("PostgreSQL partition, heap", heap),
                            ("PostgreSQL partition, heap + indexes + TOAST", total),
                            ("COPY text dump", dump.stat().st_size)):
            print(f"| {label} | {size / rows:.1f} | {size / record.bytes:.1f}× |")
        print(f"\nrow bytes (sum of pg_column_size) / Parquet bytes, the ratio the Pipeline page shows: "
              f"{record.compression_ratio:.1f}×")
        first = record.files[0]
        hourly = first["bytes"] / first["rows"]
        per_gpu_hour = gpu_hour_bytes(scratch / "archive" / first["path"]) / first["rows"]
        print(f"row groups per GPU-hour instead of per hour ({first['host']}): {per_gpu_hour:.1f} vs {hourly:.1f} "
              f"bytes/sample")
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if server is not None:
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
