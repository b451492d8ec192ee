"""Benchmark: policy replay (what-if) over a month of 10 s evaluations for 32 VMs, from PostgreSQL; target under 10 s.

Each VM's month is generated deterministically: one to three streams a day (30 min to 3 h, between 08:00 and
23:00 UTC), idle in between, never stopped (a dry-run agent's history: the most samples a month can hold), polls
10 s apart with ±0.3 s of jitter as a real agent's are. Two policies are replayed, as the service does: the current
one and a 10-minute what-if.
  memory    the replay alone, over samples already in memory: after = `replay.replay_history` on packed arrays,
            before = `replay_reference.replay_host` on one object per sample
  database  end to end over the VM-months COPYed into an embedded PostgreSQL (or DATABASE_URL), each way twice:
            after  = `vm.service.replay_policy` (hosts by index probes, packed arrays, `replay_history`, priced)
            before = the reference: DISTINCT hosts, one row per evaluation (`load_samples`), `replay_host`
            The two must find the same stops: the run fails otherwise.

    .venv/bin/python bench/bench_replay.py [--vms 32] [--days 30] [--reference-vms 32]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.config import Settings  # noqa: E402
from backend.db.migrate import migrate  # noqa: E402
from backend.identity.principal import SYSTEM  # noqa: E402
from backend.vm import service  # noqa: E402
from backend.vm.policy import Policy  # noqa: E402
from backend.vm.replay import History, PolicyChanges, ReplayStop, replay_history  # noqa: E402
from backend.vm.replay_reference import Sample, load_samples, replay_host, run_ends  # noqa: E402

POLL = timedelta(seconds=10)
WHAT_IF = PolicyChanges(idle_seconds=600)
LIVE = json.dumps([{"signal": "rtmp", "state": "active", "evidence": "1 live RTMP publisher(s)"},
                   {"signal": "gpu", "state": "active", "evidence": "GPU 0 at 80 %"}])
IDLE = json.dumps([{"signal": "rtmp", "state": "idle", "evidence": "no live RTMP publisher"},
                   {"signal": "gpu", "state": "idle", "evidence": "GPU 0 at 0 %"}])
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def month(vm: int, start: datetime, days: int) -> list[Sample]:
    """One VM's samples: streams on a per-VM seeded schedule, every 10 s ± 0.3 s."""
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
        at += POLL + timedelta(microseconds=rng.randint(-300_000, 300_000))
    return samples


def packed(samples: list[Sample]) -> History:
    at = np.array([(s.at - EPOCH) // timedelta(microseconds=1) for s in samples], dtype=np.int64)
    return History(at, np.array([s.blocks for s in samples]), np.array([s.busy for s in samples]), [samples[0].boot])


def bench_memory(vms: int, days: int, reference_vms: int, start: datetime) -> None:
    policies = (Policy(), WHAT_IF.apply(Policy()))
    after = before = 0.0
    total = stops = 0
    for vm in range(vms):
        samples = month(vm, start, days)
        history = packed(samples)
        total += len(samples)
        began = time.perf_counter()
        fast = [replay_history(p, history) for p in policies]
        after += time.perf_counter() - began
        stops += sum(map(len, fast))
        if vm < reference_vms:
            began = time.perf_counter()
            ends = run_ends(samples)
            assert [replay_host(p, samples, ends) for p in policies] == fast, f"vm {vm}: the replays differ"
            before += time.perf_counter() - began
    print(f"memory    {vms} VMs × {days} d = {total:,} samples, 2 policies, {stops} stops: "
          f"after {after:.2f} s ({1000 * after / vms:.1f} ms per VM)")
    if reference_vms:
        per_vm = before / reference_vms
        print(f"memory    before (reference, {reference_vms} VMs): {per_vm:.3f} s per VM = "
              f"×{per_vm / (after / vms):.0f} the time")


def reference_replay(conn: psycopg.Connection, start: datetime, end: datetime,
                     vms: int) -> dict[str, list[list[ReplayStop]]]:
    """The replay as it ran before: every evaluation of the range read as a row, both policies replayed."""
    policies = (Policy(), WHAT_IF.apply(Policy()))
    hosts = [r["host"] for r in conn.execute(
        "SELECT DISTINCT host FROM vm_evaluations WHERE at >= %s AND at < %s ORDER BY host", (start, end))][:vms]
    replayed = {}
    for host in hosts:
        samples = load_samples(conn, host, start, end)
        ends = run_ends(samples)
        replayed[host] = [replay_host(p, samples, ends) for p in policies]
    return replayed


def bench_database(vms: int, days: int, reference_vms: int, start: datetime) -> None:
    server, scratch = None, None
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
        print(f"database  loaded {rows:,} evaluations of {vms} VMs in {time.perf_counter() - began:.0f} s")
        end = start + timedelta(days=days)
        for round_ in (1, 2):
            began = time.perf_counter()
            result = service.replay_policy(SYSTEM, timedelta(days=days), WHAT_IF, settings=settings, now=end)
            after = time.perf_counter() - began
            line = (f"database  round {round_}: after {after:.2f} s for {vms} VMs (load, 2 policies, price; stops "
                    f"{result.current.stops} now → {result.candidate.stops} what-if)")
            if reference_vms:
                with psycopg.connect(settings.database_url, row_factory=dict_row) as conn:
                    began = time.perf_counter()
                    replayed = reference_replay(conn, start, end, reference_vms)
                    before = time.perf_counter() - began
                fast = {h.host: [h.stops] for h in result.current.hosts}
                for h in result.candidate.hosts:
                    fast[h.host].append(h.stops)
                assert all(fast[host] == stops for host, stops in replayed.items()), "the replays differ"
                scaled = before * vms / reference_vms
                line += (f"; before {before:.2f} s for {reference_vms} VMs"
                         + (f" ({scaled:.1f} s for {vms})" if reference_vms < vms else "")
                         + f" = ×{scaled / after:.1f} the time; same stops")
            print(line)
    finally:
        if server is not None:
            server.stop()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=32)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--reference-vms", type=int, default=32, help="VMs the slow reference replays (0: none)")
    parser.add_argument("--memory-only", action="store_true", help="skip the database part")
    args = parser.parse_args()
    start, reference_vms = datetime(2026, 10, 1, tzinfo=UTC), min(args.reference_vms, args.vms)
    bench_memory(args.vms, args.days, reference_vms, start)
    if not args.memory_only:
        bench_database(args.vms, args.days, reference_vms, start)


if __name__ == "__main__":
    main()
