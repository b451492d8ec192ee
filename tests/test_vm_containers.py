"""Containers through the real docker SDK against a fake Engine API on a unix socket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from backend import audit
from backend.cli import app
from backend.config import Settings
from backend.errors import NotFound, Unavailable
from backend.identity.principal import PermissionDenied, Principal, Role
from backend.vm import service
from tests.fakes.docker_engine import FakeDockerEngine

OPERATOR = Principal("olga", Role.operator)
VIEWER = Principal("vic", Role.viewer)


@pytest.fixture
def engine(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDockerEngine]:
    fake = FakeDockerEngine(tmp_path / "docker.sock").start()
    fake.add("api", image="stream-platform:1.0", restarts=2, lines=((1, "GET /health 200"), (2, "warning: slow")))
    fake.add("sink", image="stream-platform:1.0", status="exited", health=None)
    monkeypatch.setattr(settings, "docker_host", fake.base_url)
    yield fake
    fake.stop()


def test_list_logs_and_restart(engine: FakeDockerEngine, settings: Settings, db: psycopg.Connection) -> None:
    api, sink = service.list_containers(VIEWER, settings=settings)
    assert (api.name, api.image, api.status, api.health, api.restart_count) == (
        "api", "stream-platform:1.0", "running", "healthy", 2)
    assert api.uptime_seconds is not None and api.uptime_seconds > 0
    assert (sink.status, sink.health, sink.uptime_seconds) == ("exited", None, None)

    assert service.container_logs(OPERATOR, "api", 1, settings=settings) == "warning: slow\n"
    assert service.container_logs(OPERATOR, "api", 10, settings=settings) == "GET /health 200\nwarning: slow\n"
    with pytest.raises(PermissionDenied):
        service.container_logs(VIEWER, "api", 10, settings=settings)

    restarted = service.restart_container(OPERATOR, "api", settings=settings)
    assert restarted.restart_count == 3
    full_id = api.id + "ab" * 26
    assert [c for c in engine.calls if c[0] == "POST"] == [("POST", f"/v1.44/containers/{full_id}/restart?t=10")]
    with pytest.raises(PermissionDenied):
        service.restart_container(VIEWER, "api", settings=settings)
    with pytest.raises(NotFound, match="no container named ghost"):
        service.restart_container(OPERATOR, "ghost", settings=settings)
    rows = [(e.actor, e.action, e.target, e.outcome) for e in reversed(audit.entries(db, area="vm"))]
    assert rows == [("olga", "container.restart", "api", "ok"), ("vic", "container.restart", "api", "denied"),
                    ("olga", "container.restart", "ghost", "error")]


def test_engine_absent_is_a_clear_state(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = f"unix://{tmp_path}/no-docker.sock"
    monkeypatch.setattr(settings, "docker_host", missing)
    with pytest.raises(Unavailable) as caught:
        service.list_containers(VIEWER, settings=settings)
    assert str(caught.value) == f"Docker engine not reachable at {missing}"

    monkeypatch.setenv("DOCKER_HOST", missing)
    result = CliRunner().invoke(app, ["vm", "containers"])
    assert result.exit_code == 2
    one_line = result.output.replace("\n", "")  # rich wraps long lines at the terminal width
    assert f"error: Docker engine not reachable at {missing}" in one_line and "Traceback" not in one_line


def test_cli_lists_containers_as_json_and_shows_logs(
    engine: FakeDockerEngine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", engine.base_url)
    from backend.config import get_settings

    get_settings.cache_clear()
    listed = CliRunner().invoke(app, ["vm", "containers", "--json"])
    assert listed.exit_code == 0, listed.output
    assert '"name": "api"' in listed.output and '"restart_count": 2' in listed.output
    logs = CliRunner().invoke(app, ["vm", "logs", "api", "--tail", "5"])
    assert logs.exit_code == 0 and logs.output == "GET /health 200\nwarning: slow\n"
    restarted = CliRunner().invoke(app, ["vm", "restart", "sink"])
    assert restarted.exit_code == 0 and "restarted sink: running, 1 restart(s)" in restarted.output
