"""Benchmark: the sink of the working tree against the sink of an earlier revision, interleaved, in one run.

Both sides drain the same pre-produced topic (simulator samples, 12 partitions, a fresh tansu broker) into their
own fresh database, each in its own process, alternating round by round so that load on a shared machine hits both;
then both are measured for produce → visible latency at a steady rate (bench_sink.bench_latency of each tree).

    .venv/bin/python bench/bench_sink_ab.py --before <git revision> [--samples 100000] [--rounds 3]
        [--latency-rounds 2] [--rate 20000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_sink  # noqa: E402

_DRAIN = ("import sys; sys.path.insert(0, sys.argv[1]); from backend.telemetry.sink.consumer import Sink; "
          "s = Sink(until_idle=3.0).run(); print('RESULT', round(s.messages_per_s), s.metrics_written)")
_LATENCY = ("import sys; sys.path.insert(0, sys.argv[1] + '/bench'); import bench_sink as b; "
            "r = b.bench_latency(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])); "
            "print('RESULT', r['p50_ms'], r['p99_ms'], r['stored'], r['samples'])")


def result(args: list[str], cwd: str, env: dict[str, str] | None = None) -> list[str]:
    out = subprocess.run([sys.executable, "-c", *args], cwd=cwd, env=env, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT")]
    if not lines:
        raise RuntimeError(f"no result from {cwd}: {out.stderr[-2000:]}")
    return lines[0].split()[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision to compare against")
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-rounds", type=int, default=2)
    parser.add_argument("--rate", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    old = tempfile.mkdtemp(prefix="sink-ab-")
    archive = subprocess.run(["git", "archive", args.before, "backend", "bench"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
    trees = {"before": old, "after": str(ROOT)}

    with bench_sink.stack() as (admin_url, bootstrap):
        dbs = bench_sink.Databases(admin_url)
        topic = f"bench.ab.{uuid.uuid4().hex[:6]}"
        base = bench_sink.settings_for(dbs.url(dbs.create()), bootstrap, topic, "unused")
        bench_sink.produce_all(base, bench_sink.simulated(args.samples))
        rates: dict[str, list[int]] = {name: [] for name in trees}
        for round_ in range(args.rounds):
            for name, tree in trees.items():
                env = dict(os.environ, DATABASE_URL=dbs.url(dbs.create()), KAFKA_BOOTSTRAP_SERVERS=bootstrap,
                           TELEMETRY_TOPIC=topic, TOKEN_USAGE_TOPIC=base.token_usage_topic, DLQ_TOPIC=base.dlq_topic,
                           DB_PROFILE="postgres", KAFKA_GROUP_ID=f"{topic}.{name}{round_}",
                           SECRETS_ENV_FILE="/nonexistent", LOG_LEVEL="WARNING")
                rate, written = map(int, result([_DRAIN, tree], tree, env))
                rates[name].append(rate)
                print(f"throughput  {name:<6} round {round_}: {rate:>8,} samples/s ({written:,} stored)", flush=True)
        for round_ in range(args.latency_rounds):
            for name, tree in trees.items():
                p50, p99, stored, sent = result(
                    [_LATENCY, tree, dbs.url(dbs.create()), bootstrap, str(args.rate), str(args.seconds)], tree)
                print(f"latency     {name:<6} round {round_} at {args.rate:,}/s: p50 {float(p50):.0f} ms, "
                      f"p99 {float(p99):.0f} ms ({stored}/{sent} stored)", flush=True)

    before, after = statistics.median(rates["before"]), statistics.median(rates["after"])
    print(f"\nthroughput medians: before {before:,.0f}, after {after:,.0f} samples/s; "
          f"after/before {after / before:.2f}")


if __name__ == "__main__":
    sys.exit(main())
