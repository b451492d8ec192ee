"""Docker adapter (docker SDK): containers with status, health, uptime, restarts and logs; restart.

Without an engine every call raises `Unavailable("Docker engine not reachable at …")`, never a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import docker
from docker.errors import DockerException
from docker.errors import NotFound as DockerNotFound

from backend.errors import NotFound, Unavailable

_DEFAULT = "unix:///var/run/docker.sock"
_NEVER = "0001-01-01"


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    image: str
    status: str
    health: str | None
    started_at: datetime | None
    uptime_seconds: float | None
    restart_count: int


def _parse_time(text: str | None) -> datetime | None:
    """Docker's RFC 3339 with nanoseconds; the zero time means never."""
    if not text or text.startswith(_NEVER):
        return None
    head, _, fraction = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(fraction or '0')[:6]}").replace(tzinfo=UTC)


def _info(attrs: dict[str, Any], now: datetime) -> ContainerInfo:
    state = attrs.get("State", {})
    started = _parse_time(state.get("StartedAt"))
    running = state.get("Status") == "running"
    return ContainerInfo(
        id=attrs["Id"][:12],
        name=attrs.get("Name", "").lstrip("/"),
        image=attrs.get("Config", {}).get("Image", ""),
        status=state.get("Status", "unknown"),
        health=(state.get("Health") or {}).get("Status"),
        started_at=started,
        uptime_seconds=(now - started).total_seconds() if running and started else None,
        restart_count=int(attrs.get("RestartCount", 0)),
    )


class DockerHost:
    def __init__(self, base_url: str | None = None, timeout: float = 10.0) -> None:
        self.base_url = base_url or os.environ.get("DOCKER_HOST") or _DEFAULT
        self.timeout = timeout

    @contextmanager
    def _client(self) -> Iterator[docker.DockerClient]:
        try:
            client = docker.DockerClient(base_url=self.base_url, timeout=self.timeout)
        except DockerException:
            raise Unavailable(f"Docker engine not reachable at {self.base_url}") from None
        try:
            yield client
        except DockerException as exc:
            raise Unavailable(f"Docker engine at {self.base_url} failed: {type(exc).__name__}") from None
        finally:
            client.close()

    def _get(self, client: docker.DockerClient, name: str) -> Any:
        try:
            return client.containers.get(name)
        except DockerNotFound:
            raise NotFound(f"no container named {name}") from None

    def list(self) -> list[ContainerInfo]:
        now = datetime.now(UTC)
        with self._client() as client:
            found = [_info(c.attrs, now) for c in client.containers.list(all=True)]
        return sorted(found, key=lambda c: c.name)

    def logs(self, name: str, tail: int = 200) -> str:
        with self._client() as client:
            raw = self._get(client, name).logs(stdout=True, stderr=True, tail=tail)
        return raw.decode("utf-8", errors="replace")

    def restart(self, name: str, timeout: int = 10) -> ContainerInfo:
        with self._client() as client:
            container = self._get(client, name)
            container.restart(timeout=timeout)
            container.reload()
            return _info(container.attrs, datetime.now(UTC))
