"""Benchmark: policy replay (what-if) over a month of 10 s evaluations for 32 VMs; target under 10 s.

Each VM's month is generated deterministically: one to three streams a day (30 min to 3 h, between 08:00 and
23:00 UTC), idle in between, never stopped (a dry-run agent's history: the most samples a month can hold).
  replay     `replay_host` for the current policy and a 10-minute what-if, as the service runs them, per VM
  baseline   the same replay deciding every sample through `policy.decide` (no inline active step), on a few VMs
  database   the service end to end (`vm.service.replay_policy`: load from PostgreSQL, replay both, price) over
             VM-months COPYed into an embedded PostgreSQL (or DATABASE_URL)

    .venv/bin/python bench/bench_replay.py [--vms 32] [--days 30] [--baseline-vms 2] [--db-vms 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.config import Settings  # noqa: E402
from backend.db.migrate import migrate  # noqa: E402
from backend.identity.principal import SYSTEM  # noqa: E402
from backend.vm import replay, service  # noqa: E402
from backend.vm.policy import Countdown, Policy, decide  # noqa: E402
from backend.vm.replay import PolicyChanges, Sample, replay_host, run_ends  # noqa: E402

POLL = timedelta(seconds=10)
WHAT_IF = PolicyChanges(idle_seconds=600)
LIVE = json.dumps([{"signal": "rtmp", "state": "active", "evidence": "1 live RTMP publisher(s)"},
                   {"signal": "gpu", "state": "active", "evidence": "GPU 0 at 80 %"}])
IDLE = json.dumps([{"signal": "rtmp", "state": "idle", "evidence": "no live RTMP publisher"},
                   {"signal": "gpu", "state": "idle", "evidence": "GPU 0 at 0 %"}])


def month(vm: int, start: datetime, days: int) -> list[Sample]:
    """One VM's samples: streams on a per-VM seeded schedule, every 10 s."""
    rng, live = random.Random(vm), []
    for day in range(days):
        for _ in range(rng.randint(1, 3)):
            begin = start + timedelta(days=day, hours=rng.uniform(8, 20))
            live.append((begin, begin + timedelta(minutes=rng.uniform(30, 180))))
    live.sort()
    samples, at, k, end = [], start, 0, start + timedelta(days=days)
    while at < end:
        while k < len(live) and live[k][1] <= at:
            k += 1
        busy = k < len(live) and live[k][0] <= at
        samples.append(Sample(at, start, busy, busy))
        at += POLL
    return samples


def every_sample(policy: Policy, samples: list[Sample]) -> int:
    """The baseline: `decide` on every sample; returns the number of stops."""
    state, i, stops, restarted, ends = Countdown(), 0, 0, None, replay.run_ends(samples)
    while i < len(samples):
        s = samples[i]
        decision = decide(policy, state, s.at, restarted or s.boot, replay._BLOCKING if s.blocks else [])
        state, i = decision.state, i + 1
        if decision.kind == "stop":
            stops += 1
            _, i = replay._stopped(samples, ends, i - 1)
            state, restarted = Countdown(), samples[i].at if i < len(samples) else None
    return stops


def bench_memory(vms: int, days: int, baseline_vms: int, start: datetime) -> None:
    current = Policy()
    candidate = WHAT_IF.apply(current)
    ours = base = 0.0
    samples_total = stops_now = stops_then = 0
    for vm in range(vms):
        samples = month(vm, start, days)
        samples_total += len(samples)
        began = time.perf_counter()
        ends = run_ends(samples)
        stops_now += len(replay_host(current, samples, ends))
        stops_then += len(replay_host(candidate, samples, ends))
        ours += time.perf_counter() - began
        if vm < baseline_vms:
            began = time.perf_counter()
            every_sample(current, samples)
            every_sample(candidate, samples)
            base += time.perf_counter() - began
    print(f"replay    {vms} VMs × {days} d = {samples_total:,} samples, 2 policies: {ours:.2f} s "
          f"({ours / vms:.3f} s per VM; stops {stops_now} now → {stops_then} what-if)")
    if baseline_vms:
        per_vm = base / baseline_vms
        print(f"baseline  decide on every sample: {per_vm:.3f} s per VM (×{per_vm / (ours / vms):.1f} slower), "
              f"{per_vm * vms:.1f} s for {vms} VMs")


def bench_database(vms: int, days: int, start: datetime) -> None:
    server = None
    if os.environ.get("DATABASE_URL"):
        admin_url = os.environ["DATABASE_URL"]
    else:
        from backend.embedded.postgres import EmbeddedPostgres

        scratch = Path(tempfile.mkdtemp(prefix="bench-replay-"))
        os.chmod(scratch, 0o755)  # noqa: S103 - the embedded PostgreSQL runs as its own system user
        server = EmbeddedPostgres(scratch / "data", keep_data=False)
        admin_url = server.start()
    name = f"bench_replay_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    settings = Settings(database_url=psycopg.conninfo.make_conninfo(admin_url, dbname=name), db_profile="postgres")
    try:
        migrate(settings)
        began, rows = time.perf_counter(), 0
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            for vm in range(vms):
                with conn.cursor().copy("COPY vm_evaluations (host, at, decision, signals) FROM STDIN") as copy:
                    for s in month(vm, start, days):
                        copy.write_row((f"vm-{vm:02d}", s.at, "active" if s.blocks else "idle",
                                        LIVE if s.blocks else IDLE))
                        rows += 1
            conn.execute("VACUUM ANALYZE vm_evaluations")
        print(f"database  loaded {rows:,} evaluations of {vms} VMs in {time.perf_counter() - began:.1f} s")
        now = start + timedelta(days=days)
        began = time.perf_counter()
        result = service.replay_policy(SYSTEM, timedelta(days=days), WHAT_IF, settings=settings, now=now)
        took = time.perf_counter() - began
        print(f"database  service replay of {vms} VMs (load, 2 policies, price): {took:.2f} s "
              f"({took / vms:.2f} s per VM; stops {result.current.stops} now → {result.candidate.stops} what-if)")
        with psycopg.connect(settings.database_url, row_factory=dict_row) as conn:
            began = time.perf_counter()
            loaded = replay.load_samples(conn, "vm-00", now - timedelta(days=days), now)
            print(f"database  of which loading one VM's {len(loaded):,} samples: {time.perf_counter() - began:.2f} s")
    finally:
        if server is not None:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=32)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--baseline-vms", type=int, default=2)
    parser.add_argument("--db-vms", type=int, default=2)
    args = parser.parse_args()
    start = datetime(2026, 10, 1, tzinfo=UTC)
    bench_memory(args.vms, args.days, args.baseline_vms, start)
    if args.db_vms:
        bench_database(args.db_vms, args.days, start)


if __name__ == "__main__":
    main()
