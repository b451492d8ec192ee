"""Benchmark: the sink of the working tree against the sink of an earlier revision, interleaved, in one run.

Each side gets its own template database migrated by its own tree's migrations. Both drain the same pre-produced
topic (simulator samples, 12 partitions, a fresh tansu broker) into a fresh copy of their template, round by round
and alternating, so that load on a shared machine hits both: the whole sink process (`python -m
backend.telemetry.sink_cli --until-idle 1`, run in that tree) from spawn to exit, its busy rate (first message to
last commit), spawn → first stored row and the group-join wait. A tree that keeps rollups off the hot path then
has its pending buckets caught up by its own worker (`materialize`, run in that tree) and the time counted; a tree
from before that did them inside its batches. Each round also measures the same-run baselines: raw binary COPY of
the same rows into `gpu_metrics` and (first round) quix-streams' PostgreSQLSink as a whole process. Then both
trees' sinks are measured for produce → visible latency at a steady rate with this tree's harness
(`bench_sink.bench_latency`; each sink creates its own partitions), next to the broker alone; `--across-a-minute`
places every latency round so that a minute's rollup pass falls inside it.
The end prints the issue's goal table for both.

    .venv/bin/python bench/bench_sink_ab.py --before <git revision> [--samples 100000] [--rounds 3]
        [--latency-rounds 2] [--rate 20000] [--seconds 10] [--skip-quix] [--across-a-minute]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_sink  # noqa: E402

_MIGRATE = ("import sys; sys.path.insert(0, sys.argv[1]); from backend.config import Settings; "
            "from backend.db.migrate import migrate; "
            "migrate(Settings(database_url=sys.argv[2], db_profile='postgres'))")
# a tree's own rollup worker catches up its pending buckets (its schema may differ); prints the seconds it took
_MATERIALIZE = ("import sys, time; sys.path.insert(0, sys.argv[1]); from backend.config import Settings; "
                "from backend.telemetry.sink.rollup_worker import materialize; started = time.perf_counter(); "
                "materialize(Settings(database_url=sys.argv[2])); print(time.perf_counter() - started)")


class Templates:
    """One template database per tree, migrated by that tree; fresh copies of it per round."""

    def __init__(self, admin_url: str, trees: dict[str, str]) -> None:
        self.admin_url = admin_url
        self.names = {name: self._create() for name in trees}
        for name, tree in trees.items():
            subprocess.run([sys.executable, "-c", _MIGRATE, tree, self.url(self.names[name])], cwd=tree, check=True,
                           capture_output=True)

    def url(self, database: str) -> str:
        return psycopg.conninfo.make_conninfo(self.admin_url, dbname=database)

    def _create(self, template: str | None = None) -> str:
        name = f"ab_{uuid.uuid4().hex[:8]}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(statement)
        return name

    def fresh(self, tree_name: str) -> str:
        return self.url(self._create(self.names[tree_name]))


def has_rollup_worker(db_url: str) -> bool:
    """Whether this tree keeps rollups off the hot path (their pending buckets are then caught up after exit)."""
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT to_regclass('gpu_metrics_1m_pending') IS NOT NULL").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision to compare against")
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-rounds", type=int, default=2)
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--skip-quix", action="store_true")
    parser.add_argument("--across-a-minute", action="store_true",
                        help="start each latency run 15 s before a minute ends, so that its 1-minute rollup is "
                             "computed during the run (use --seconds 30 or more)")
    args = parser.parse_args()

    old = tempfile.mkdtemp(prefix="sink-ab-")
    archive = subprocess.run(["git", "archive", args.before, "backend", "bench"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
    trees = {"before": old, "after": str(ROOT)}

    with bench_sink.stack() as (admin_url, bootstrap):
        templates = Templates(admin_url, trees)
        topic = f"bench.ab.{uuid.uuid4().hex[:6]}"
        base = bench_sink.settings_for(templates.fresh("after"), bootstrap, topic, "unused")
        samples = bench_sink.simulated(args.samples)
        bench_sink.produce_all(base, samples)
        walls: dict[str, list[float]] = {name: [] for name in trees}
        busy: dict[str, list[float]] = {name: [] for name in trees}
        first: dict[str, list[float]] = {name: [] for name in trees}
        joins: dict[str, list[float]] = {name: [] for name in trees}
        copies: list[float] = []
        quix_wall = None
        for round_ in range(args.rounds):
            copies.append(bench_sink.bench_copy(templates.fresh("after"), samples))
            print(f"copy        raw binary COPY round {round_}: {copies[-1]:>8,.0f} rows/s", flush=True)
            if round_ == 0 and not args.skip_quix:
                quix = base.model_copy(update={"database_url": templates.fresh("after"),
                                               "kafka_group_id": f"{topic}.quix"})
                run, rate, stored = bench_sink.bench_quix_process(quix, args.samples)
                quix_wall = run.wall_s
                print(f"quix        whole process: {args.samples / run.wall_s:>8,.0f} samples/s spawn to exit "
                      f"({run.wall_s:.1f} s; {rate:,.0f}/s from its first message; {stored:,} stored)", flush=True)
            for name, tree in trees.items():
                settings = base.model_copy(update={"database_url": templates.fresh(name),
                                                   "kafka_group_id": f"{topic}.{name}{round_}"})
                command = [sys.executable, "-m", "backend.telemetry.sink_cli", "--until-idle", "1"]
                run = bench_sink.run_process(command, Path(tree), bench_sink.sink_process_env(settings),
                                             settings.database_url)
                catch_up = 0.0
                if has_rollup_worker(settings.database_url):
                    catch_up = float(subprocess.run(
                        [sys.executable, "-c", _MATERIALIZE, tree, settings.database_url], cwd=tree, check=True,
                        capture_output=True, text=True).stdout.split()[-1])
                walls[name].append(run.wall_s + catch_up)
                busy[name].append(run.busy_rate())
                first[name].append(run.first_row_s - run.join_s)
                joins[name].append(run.join_s)
                print(f"drain       {name:<6} round {round_}: {args.samples / run.wall_s:>8,.0f} samples/s spawn to "
                      f"exit ({run.wall_s:.1f} s, rollups caught up {catch_up:.1f} s later), "
                      f"{run.busy_rate():>8,.0f}/s while busy, first row {run.first_row_s:.2f} s "
                      f"(group join {run.join_s:.2f} s), {bench_sink.count(settings.database_url):,} stored",
                      flush=True)
        p99s: dict[str, list[float]] = {name: [] for name in trees}
        floors: list[float] = []
        for round_ in range(args.latency_rounds):
            floors.append(bench_sink.bench_broker_latency(bootstrap, args.rate, args.seconds)["p99_ms"])
            print(f"latency     broker alone round {round_}: p99 {floors[-1]:.0f} ms", flush=True)
            for name, tree in trees.items():
                r = bench_sink.bench_latency(templates.fresh(name), bootstrap, args.rate, args.seconds,
                                             rollups=args.across_a_minute, tree=Path(tree))
                p99s[name].append(float(r["p99_ms"]))
                rollup = f", minute's rollup {r['rollup_s']:.1f} s after its end" if "rollup_s" in r else ""
                print(f"latency     {name:<6} round {round_} at {args.rate:,}/s: p50 {r['p50_ms']:.0f} ms, "
                      f"p99 {r['p99_ms']:.0f} ms, max {r['max_ms']:.0f} ms{rollup} "
                      f"({r['stored']}/{r['samples']} stored)", flush=True)

    med = statistics.median
    copy = med(copies)
    print(f"\ngoal table (medians of this run; raw COPY {copy:,.0f} rows/s, broker alone p99 {med(floors):.0f} ms"
          + (f", quix whole process {quix_wall:.1f} s" if quix_wall else "") + "):")
    print(f"{'measure':<46}{'before':>12}{'after':>12}")
    rows = [("steady ingest, 1 process (samples/s)", med(busy["before"]), med(busy["after"]), ",.0f"),
            ("… share of raw COPY", med(busy["before"]) / copy, med(busy["after"]) / copy, ".2f"),
            ("whole process incl. rollups (s)", med(walls["before"]), med(walls["after"]), ".1f")]
    if quix_wall:
        rows.append(("whole-process drain vs quix (×)", quix_wall / med(walls["before"]),
                     quix_wall / med(walls["after"]), ".1f"))
    rows += [("spawn → first row, join excluded (s)", med(first["before"]), med(first["after"]), ".2f"),
             ("group join (s)", med(joins["before"]), med(joins["after"]), ".2f"),
             (f"produce → visible p99 at {args.rate:,}/s (ms)", med(p99s["before"]) if p99s["before"] else 0,
              med(p99s["after"]) if p99s["after"] else 0, ".0f")]
    for label, before, after, fmt in rows:
        print(f"{label:<46}{before:>12{fmt}}{after:>12{fmt}}")


if __name__ == "__main__":
    sys.exit(main())
