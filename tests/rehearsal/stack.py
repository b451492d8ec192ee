"""The production compose stack on the rehearsal's engine: `docker-compose.yml` plus the one override file, under a
project name of its own, with a project directory of its own holding the operator's `secrets.env`.

Ports are published on 127.0.0.1 only, on free ports, so nothing outside loopback can reach the stack and it does
not collide with anything else on this machine.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from backend.embedded.ports import free_port
from tests.rehearsal.engine import Engine
from tests.rehearsal.images import REPO, Images

OVERRIDE = REPO / "infrastructure" / "rehearsal" / "docker-compose.rehearsal.yml"
PROFILES = ("demo",)
UP_TIMEOUT_S = 600
# Services that run to completion; every other service of the stack must be running and, with a healthcheck,
# healthy.
JOBS = ("kafka-init", "migrate", "nginx-config")


def compose_binary() -> Path:
    import compose

    return Path(compose.__file__).parent / "docker-compose"


@dataclass
class Stack:
    engine: Engine
    images: Images
    workdir: Path
    project: str = field(default_factory=lambda: f"sp-rehearsal-{uuid.uuid4().hex[:8]}")
    ports: dict[str, int] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ports = {"api": free_port(), "console": free_port(), "rtmp": free_port()}
        self.secrets = {
            "POSTGRES_PASSWORD": secrets.token_urlsafe(18),
            "ADMIN_PASSWORD": secrets.token_urlsafe(18),
            "SECRETS_LOCAL_KEY": Fernet.generate_key().decode(),
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        env_file = self.workdir / "secrets.env"
        socket_gid = self.engine.socket.stat().st_gid
        lines = [f"{name}={value}" for name, value in self.secrets.items()]
        lines += ["DB_PROFILE=postgres", f"DOCKER_GID={socket_gid}"]
        env_file.touch(mode=0o600)
        env_file.write_text("\n".join(lines) + "\n")

    @property
    def env_file(self) -> Path:
        return self.workdir / "secrets.env"

    def _env(self) -> dict[str, str]:
        clean = {k: v for k, v in self.engine.env().items() if not k.startswith(("COMPOSE_", "POSTGRES_"))}
        return clean | {
            "STREAM_PLATFORM_IMAGE": self.images.app,
            "STREAM_PLATFORM_NGINX_IMAGE": self.images.nginx,
            "REHEARSAL_POSTGRES_IMAGE": self.images.postgres,
            "REHEARSAL_KAFKA_IMAGE": self.images.kafka,
            "DOCKER_SOCKET": str(self.engine.socket),
            "API_PUBLISH": f"127.0.0.1:{self.ports['api']}",
            "CONSOLE_PUBLISH": f"127.0.0.1:{self.ports['console']}",
            "RTMP_PUBLISH": f"127.0.0.1:{self.ports['rtmp']}",
        }

    def compose(self, *args: str, timeout: float = 120, check: bool = True,
                input: str | None = None) -> subprocess.CompletedProcess[str]:
        command = [str(compose_binary()), "--project-name", self.project, "--project-directory", str(self.workdir),
                   "-f", str(REPO / "docker-compose.yml"), "-f", str(OVERRIDE), "--env-file", str(self.env_file),
                   *[arg for profile in PROFILES for arg in ("--profile", profile)], *args]
        result = subprocess.run(command, env=self._env(), capture_output=True, text=True, timeout=timeout,
                                input=input)
        if check and result.returncode != 0:
            raise RuntimeError(f"compose {' '.join(args[:2])} failed ({result.returncode}):\n"
                               f"{result.stdout[-2000:]}{result.stderr[-3000:]}")
        return result

    def up(self) -> float:
        """Start everything and wait until it is healthy; returns the seconds that took.

        Not `up --wait`: Compose 2.40 refuses to wait for services whose healthcheck is disabled (the
        health evaluator, the simulator) with "has no healthcheck configured", so the wait is `ps` polling.
        """
        started = time.monotonic()
        result = self.compose("up", "--detach", "--no-build", "--pull", "never", timeout=UP_TIMEOUT_S, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"compose up failed ({result.returncode}):\n{result.stderr[-3000:]}\n{self.logs()}")
        while waiting := self.not_ready():
            if time.monotonic() - started > UP_TIMEOUT_S:
                raise RuntimeError(f"not healthy after {UP_TIMEOUT_S}s: {'; '.join(waiting)}\n{self.logs()}")
            time.sleep(1)
        return time.monotonic() - started

    def not_ready(self) -> list[str]:
        """What still keeps the stack from being up: jobs not finished, services not running or not healthy.
        A job that failed or a service marked unhealthy raises at once."""
        waiting = []
        for row in self.ps():
            name, state, health = row["Service"], row["State"], row.get("Health", "")
            if name in JOBS:
                if state == "exited" and row["ExitCode"] != 0:
                    raise RuntimeError(f"job {name} exited with {row['ExitCode']}\n{self.logs()}")
                if state != "exited":
                    waiting.append(f"{name} {state}")
            elif health == "unhealthy":
                raise RuntimeError(f"{name} is unhealthy\n{self.logs()}")
            elif state != "running" or health not in ("healthy", ""):
                waiting.append(f"{name} {state} {health}".strip())
        return waiting

    def down(self, *, volumes: bool) -> None:
        self.compose("down", "--remove-orphans", "--timeout", "20", *(["--volumes"] if volumes else []), timeout=300)

    def logs(self, tail: int = 40) -> str:
        return self.compose("logs", "--no-color", "--tail", str(tail), check=False, timeout=60).stdout[-6000:]

    def exec(self, service: str, *command: str, input: str | None = None, check: bool = True) -> str:
        """`docker compose exec -T SERVICE COMMAND…`: its stdout."""
        result = self.compose("exec", "-T", service, *command, input=input, check=False, timeout=180)
        if check and result.returncode != 0:
            raise RuntimeError(f"exec {service} {' '.join(command)} failed ({result.returncode}): "
                               f"{(result.stdout + result.stderr)[-1500:]}")
        return result.stdout

    def cli(self, *args: str, input: str | None = None) -> str:
        """`stream-platform ARGS…` inside the api container."""
        return self.exec("api", "stream-platform", *args, input=input)

    def sql(self, query: str) -> str:
        """One psql query in the database container, unaligned and tuples only."""
        return self.exec("timescaledb", "psql", "-U", "platform", "-d", "platform", "-At", "-c", query).strip()

    def ps(self) -> list[dict[str, Any]]:
        """Every container of the project, jobs that finished included."""
        out = self.compose("ps", "--all", "--format", "json").stdout
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
        return [row for item in rows for row in (item if isinstance(item, list) else [item])]

    def container(self, service: str) -> str:
        return f"{self.project}-{service}-1"

    def leftovers(self) -> list[str]:
        """Containers, networks and volumes of this project that still exist."""
        label = f"label=com.docker.compose.project={self.project}"
        found = []
        for kind, listing in (("container", ["ps", "-a"]), ("network", ["network", "ls"]),
                              ("volume", ["volume", "ls"])):
            out = self.engine.docker(*listing, "--quiet", "--filter", label, check=False).stdout.decode()
            found += [f"{kind} {name}" for name in out.split()]
        return found
