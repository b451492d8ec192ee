"""Benchmark: the auto-shutdown agent's own cost — CPU time per evaluation, as a share of one core at a 10 s poll.

In process, N evaluations per configuration with the real signals (their first-sample windows are warmed up, so
each poll measures since the previous one, as in `run`), CPU time from `time.process_time()`:
  baseline   the policy and a state file only (no signals): the bookkeeping floor
  host       + CPU, network and logged-in sessions (psutil), GPU n/a (no driver here)
  rtmp       + nginx-rtmp `/stat` over HTTP (a static stat page served by a separate process)
  database   + PostgreSQL state/evaluation/event rows and GPU telemetry lookups (embedded PostgreSQL)
Then the real `stream-platform autoshutdown run` process (host signals + rtmp, state file) at a 1 s poll: its CPU
time over a window after start-up, measured from outside with psutil, scaled to a 10 s poll.

    .venv/bin/python bench/bench_agent.py [--polls 300] [--window 30]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.config import Settings  # noqa: E402
from backend.db.migrate import migrate  # noqa: E402
from backend.embedded.ports import free_port, wait_for_port  # noqa: E402
from backend.vm.actions import DryRun  # noqa: E402
from backend.vm.agent import Agent  # noqa: E402
from backend.vm.policy import Policy  # noqa: E402
from backend.vm.signals import Signal  # noqa: E402
from backend.vm.signals.cpu import CpuSignal  # noqa: E402
from backend.vm.signals.gpu import GpuSignal, GpuThresholds  # noqa: E402
from backend.vm.signals.network import NetworkSignal  # noqa: E402
from backend.vm.signals.rtmp import RtmpSignal  # noqa: E402
from backend.vm.signals.ssh import SshSignal  # noqa: E402
from backend.vm.state import DbStore, FileStore, Store  # noqa: E402

STAT = """<?xml version="1.0"?><rtmp><server><application><name>live</name><live>
<stream><name>cam1</name><time>120000</time><bw_in>2400000</bw_in><nclients>1</nclients><publishing/>
<client><id>1</id><address>10.0.0.7</address><publishing/></client></stream>
</live></application></server></rtmp>"""
POLL_SECONDS = 10.0
# Never reach a stop: the benchmark measures watching, not stopping.
POLICY = Policy(idle_seconds=10**9, warn_seconds=60, min_uptime_seconds=0, poll_seconds=POLL_SECONDS)


@dataclass(frozen=True)
class Result:
    name: str
    cpu_ms: float
    wall_ms: float

    @property
    def core_percent(self) -> float:
        return 100 * self.cpu_ms / 1000 / POLL_SECONDS


def measure(name: str, signals: list[Signal], store: Store, polls: int) -> Result:
    agent = Agent("bench-host", POLICY, signals, store, DryRun())
    for _ in range(3):
        agent.evaluate()  # warm-up: first-sample windows, imports, connections
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(polls):
        agent.evaluate()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return Result(name, 1000 * cpu / polls, 1000 * wall / polls)


def host_signals() -> list[Signal]:
    return [CpuSignal(first_window=0.1), NetworkSignal(first_window=0.1), SshSignal(),
            GpuSignal(GpuThresholds(), "bench-host", None)]


def real_process(tmp: Path, window: float, stat_url: str) -> tuple[float, int]:
    """CPU % of one core used by `stream-platform autoshutdown run` at a 1 s poll, after start-up; and its polls."""
    state = tmp / "run-state.json"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"SECRETS_ENV_FILE": "/nonexistent"}
    cmd = [str(Path(sys.executable).parent / "stream-platform"), "--log-level", "WARNING", "autoshutdown", "run",
           "--poll-seconds", "1", "--idle-seconds", str(10**9), "--state-file", str(state), "--host", "bench-run",
           "--nginx-stat-url", stat_url]
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not state.exists() or not json.loads(state.read_text() or "{}").get("evaluations"):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"agent did not start: {process.stderr.read().decode() if process.stderr else ''}")
            time.sleep(0.2)
        proc = psutil.Process(process.pid)
        before, start = proc.cpu_times(), time.monotonic()
        count_before = len(json.loads(state.read_text())["evaluations"])
        time.sleep(window)
        after, elapsed = proc.cpu_times(), time.monotonic() - start
        polls = len(json.loads(state.read_text())["evaluations"]) - count_before
    finally:
        process.terminate()
        process.wait(timeout=30)
    used = (after.user + after.system) - (before.user + before.system)
    return 100 * used / elapsed, polls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--polls", type=int, default=300)
    parser.add_argument("--window", type=float, default=30.0)
    args = parser.parse_args()
    from backend.embedded.postgres import EmbeddedPostgres

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        os.chmod(tmp, 0o755)  # noqa: S103 - the embedded PostgreSQL runs as its own system user
        (tmp / "www").mkdir()
        (tmp / "www" / "stat").write_text(STAT)
        port = free_port()
        web = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                "--directory", str(tmp / "www")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = EmbeddedPostgres(tmp / "pg", keep_data=False)
        try:
            wait_for_port(port)
            stat_url = f"http://127.0.0.1:{port}/stat"
            url = os.environ.get("DATABASE_URL") or server.start()
            migrate(Settings(database_url=url, db_profile="postgres"))
            results = [
                measure("baseline", [], FileStore(tmp / "a.json"), args.polls),
                measure("host", host_signals(), FileStore(tmp / "b.json"), args.polls),
                measure("rtmp", [*host_signals(), RtmpSignal(stat_url)], FileStore(tmp / "c.json"), args.polls),
                measure("database", [*host_signals()[:3], RtmpSignal(stat_url),
                                     GpuSignal(GpuThresholds(), "bench-host", url, use_nvml=False)],
                        DbStore(url), args.polls),
            ]
            run_percent, run_polls = real_process(tmp, args.window, stat_url)
        finally:
            web.terminate()
            if not os.environ.get("DATABASE_URL"):
                server.stop()

    base = results[0].cpu_ms
    print(f"{'configuration':<12} {'CPU ms/eval':>12} {'wall ms/eval':>13} {'× baseline':>11} {'% core @10 s':>13}")
    for r in results:
        print(f"{r.name:<12} {r.cpu_ms:>12.2f} {r.wall_ms:>13.2f} {r.cpu_ms / base:>11.1f} {r.core_percent:>13.3f}")
    print(f"`autoshutdown run` process at a 1 s poll: {run_percent:.2f} % of a core over {args.window:.0f} s "
          f"({run_polls} polls) → {run_percent / 10:.3f} % at a 10 s poll")


if __name__ == "__main__":
    main()
