"""The whole platform as real processes for the chaos suite (`tests/test_chaos.py`): an embedded PostgreSQL that
can be halted and resumed, the session's tansu broker, `stream-platform` children (simulator, sink, API,
auto-shutdown agents), nginx-rtmp rendered by the streams area, and ffmpeg publishers.

Every child runs in its own process group and is stopped by its own PID; nothing else is ever signalled.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from backend.config import Settings
from backend.db import connect
from backend.db.migrate import migrate
from backend.demo import stop_process_group, stream_platform_argv
from backend.embedded.ports import free_port, wait_for_port
from backend.embedded.postgres import EmbeddedPostgres
from backend.identity import SYSTEM
from backend.messaging.kafka import ensure_topics
from backend.streams import keys
from backend.streams.pepper import callback_token, key_pepper
from tests.nginx_rtmp import NginxRtmp, publish, publish_and_wait
from tests.telemetry_sink.conftest import sink_env

PEPPER = "chaos-suite-pepper-" + "c" * 32
CALLBACK_TOKEN = "chaos-suite-callback-token-" + "t" * 32
HOSTS, GPUS_PER_HOST, INTERVAL_S = 50, 10, 0.1  # 500 simulated GPUs every 100 ms: 5,000 samples/s
GPUS = HOSTS * GPUS_PER_HOST
BUSY_HOST = "chaos-busy"


@dataclass
class Managed:
    """One child process, logging to `<log_dir>/<name>.log`; can be killed and started again."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_dir: Path
    process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def start(self) -> Managed:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def assert_running(self) -> None:
        """Fail at once, with the end of its log, when a child the test waits on has died."""
        code = self.process.returncode if self.process else None
        assert self.running(), f"{self.name} exited with {code}:\n{self.log()[-3000:]}"

    def kill9(self) -> None:
        """SIGKILL the process group: no clean-up, no flush, no goodbye."""
        with suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait()  # type: ignore[union-attr]

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (then SIGKILL after `timeout`); the exit status, or None if it was not started."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            stop_process_group(self.process, timeout)
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class LivePublisher:
    """A long-running ffmpeg publisher on a stream the test holds a key for."""

    url: str
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = publish(self.url, seconds=600)

    def live(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.live():
            self.process.kill()  # type: ignore[union-attr]
        if self.process is not None:
            self.process.wait()
            self.process.stderr.close()  # type: ignore[union-attr]


@dataclass
class ChaosStack:
    """Owns everything the suite starts (under `root`) and what it measured (`results`)."""

    root: Path
    kafka_bootstrap: str
    pg: EmbeddedPostgres = field(init=False)
    settings: Settings = field(init=False)
    nginx: NginxRtmp = field(init=False)
    api_port: int = field(default_factory=free_port)
    children: dict[str, Managed] = field(default_factory=dict)
    live: LivePublisher | None = None
    probe_url: str = ""
    results: dict[str, dict[str, float | int | str]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def stops_file(self) -> Path:
        """Where the busy agent's stop command writes: any line in it is a false stop."""
        return self.root / "busy-agent-stops.txt"

    def start(self) -> None:
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        self.pg = EmbeddedPostgres(self.root / "pg", keep_data=False)  # kept across `halt()`, removed at the end
        self.pg.start()
        suffix = uuid.uuid4().hex[:10]
        self.settings = Settings(
            database_url=self.pg.create_database("chaos"), db_profile="postgres",
            kafka_bootstrap_servers=self.kafka_bootstrap, kafka_partitions=4,
            telemetry_topic=f"gpu.metrics.v1.{suffix}", token_usage_topic=f"token.usage.v1.{suffix}",
            dlq_topic=f"telemetry.dlq.{suffix}", kafka_group_id=f"telemetry-sink.{suffix}",
            stream_key_pepper=PEPPER, streams_callback_token=CALLBACK_TOKEN,
            secrets_local_path=self.root / "secrets.json",
        )
        self.nginx = NginxRtmp(prefix=self.root / "nginx", callback_url=self.api_url,
                               callback_token=callback_token(self.settings))
        migrate(self.settings)
        s = self.settings
        ensure_topics([s.telemetry_topic, s.token_usage_topic, s.dlq_topic], s)
        with connect(s, autocommit=True) as conn:
            live_key = keys.create_key(conn, SYSTEM, key_pepper(s), "chaos-live")
            probe_key = keys.create_key(conn, SYSTEM, key_pepper(s), "chaos-probe")
        self.live = LivePublisher(self.nginx.rtmp_url(f"live/chaos-live?key={live_key.secret}"))
        self.probe_url = self.nginx.rtmp_url(f"live/chaos-probe?key={probe_key.secret}")

        self.child("api", "api", "serve", "--host", "127.0.0.1", "--port", str(self.api_port)).start()
        self.child("sink", "pipeline", "sink").start()
        producer = self.child("producer", "pipeline", "produce", "--source", "simulator", "--hosts", str(HOSTS),
                              "--gpus-per-host", str(GPUS_PER_HOST), "--interval", f"{INTERVAL_S * 1000:.0f}ms",
                              "--seed", "12").start()
        wait_for_port(self.api_port, timeout=90)
        self.nginx.start()
        self.live.start()
        # Busy by the workload (a probe: the producer runs) and the live stream; CPU and network are made blind, so
        # nothing else keeps it up. A short idle period: any wrong "idle" verdict would turn into a stop quickly.
        self.child("agent-busy", "autoshutdown", "run", "--host", BUSY_HOST, "--poll-seconds", "0.5",
                   "--idle-seconds", "3", "--warn-seconds", "1", "--min-uptime-seconds", "0", "--no-ssh",
                   "--nginx-stat-url", self.nginx.stat_url, "--probe", f"kill -0 {producer.pid}",
                   "--action", "command", "--command", f"sh -c 'echo stop >> {self.stops_file}'",
                   env=blind_host_signals()).start()

    def child(self, name: str, *args: str, env: dict[str, str] | None = None, database: bool = True) -> Managed:
        """A `stream-platform` child with the platform's environment (without DATABASE_URL unless `database`)."""
        s = self.settings
        full = sink_env(s, STREAM_KEY_PEPPER=PEPPER, STREAMS_CALLBACK_TOKEN=CALLBACK_TOKEN,
                        STREAMS_NGINX_STAT_URL=self.nginx.stat_url, STREAMS_NGINX_CONTROL_URL=self.nginx.control_url,
                        SECRETS_LOCAL_PATH=str(s.secrets_local_path), DB_PROFILE="postgres", PYTHONUNBUFFERED="1",
                        COLUMNS="200", **(env or {}))
        if not database:
            del full["DATABASE_URL"]
        self.children[name] = Managed(name, [*stream_platform_argv(), *args], full, self.root / "logs")
        return self.children[name]

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
        for child in reversed(self.children.values()):
            child.stop(timeout=10)
        with suppress(Exception):
            self.nginx.stop()
        self.pg.stop()

    # -- observations -----------------------------------------------------------------------------------
    def query(self, sql: str, *params: object) -> dict | None:
        """One row on a fresh connection; None while the database is down (it is, on purpose, at times)."""
        try:
            with psycopg.connect(self.settings.database_url, row_factory=dict_row, connect_timeout=2) as conn:
                return conn.execute(sql, params).fetchone()
        except psycopg.OperationalError:
            return None

    def gpus_fresher_than(self, moment: datetime) -> int:
        """How many GPUs have a stored sample stamped after `moment` (all of them: ingest has caught up)."""
        row = self.query("SELECT count(DISTINCT gpu_uuid) AS n FROM gpu_metrics WHERE time > %s", moment)
        return row["n"] if row else 0

    def caught_up_after(self, moment: datetime, since: float, timeout: float = 90.0) -> float:
        """Seconds from `since` (monotonic) until every GPU has a sample stamped after `moment` stored."""
        sink = self.children["sink"]

        def caught_up() -> bool:
            sink.assert_running()
            return self.gpus_fresher_than(moment) == GPUS

        return timed(caught_up, timeout, what="ingest to catch up", since=since)

    def publish_accepted(self, *, api_up: bool = True) -> bool:
        """Whether a short publish gets through nginx's on_publish; `api_up`: fail at once if the API died."""
        if api_up:
            self.children["api"].assert_running()
        return publish_and_wait(self.probe_url, seconds=1, timeout=30) == 0

    @property
    def results_path(self) -> Path:
        return self.root / "chaos-results.json"

    def record(self, kill: str, **numbers: float | int | str) -> None:
        """Numbers of one step, kept for the summary and rewritten to `results_path` at once."""
        self.results[kill] = {k: round(v, 2) if isinstance(v, float) else v for k, v in numbers.items()}
        self.results_path.write_text(json.dumps(self.results, indent=2) + "\n")


def blind_host_signals() -> dict[str, str]:
    """CPU and network can never read active (the machine is busy with the test itself), so the agent's verdict
    rests on the signals the test controls."""
    return {"AUTOSHUTDOWN_CPU_BUSY_PERCENT": "101", "AUTOSHUTDOWN_NETWORK_KIB_PER_S": "1e12"}


def now() -> datetime:
    return datetime.now(UTC)


def timed(predicate: Callable[[], object], timeout: float, *, what: str, interval: float = 0.1,
          since: float | None = None) -> float:
    """Seconds from `since` (a `time.monotonic()`; default: now) until `predicate()` is true; fails the test
    after `timeout` seconds of waiting."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - (started if since is None else since)


def produced(log: str) -> int:
    """Messages the simulator handed to Kafka, from its closing summary (it exits 1 if any were not delivered)."""
    match = re.search(r"sent (\d+) messages", log)
    assert match, f"no produce summary in the simulator's output:\n{log[-2000:]}"
    return int(match[1])


class ChaosSummary:
    """A pytest plugin printing the recovery table at the end of the run, whether or not output is captured."""

    def __init__(self, stack: ChaosStack) -> None:
        self.stack = stack

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.stack.results:
            return
        terminalreporter.write_sep("=", "chaos suite: recovery times and accounting")
        for name, numbers in self.stack.results.items():
            terminalreporter.write_line(f"{name:>9}: " + ", ".join(f"{k} {v}" for k, v in numbers.items()))
        terminalreporter.write_line(f"(also in {self.stack.results_path})")
