"""The production rehearsal (`make rehearsal`): the real images on a real Docker Engine, driven from outside.

Session fixtures, in order: the engine (the running one, or our own dockerd), the images (cached between runs),
the stack (a project of its own, brought up with `up --wait`, taken down with its volumes afterwards — and the
run fails if any of its containers, networks or volumes is left). Where no engine can run (not root), the tests
skip with one line; with CI=true they fail instead (the root conftest turns skips into failures).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.rehearsal.engine import Engine, EngineUnavailable, engine
from tests.rehearsal.images import Images, build_all
from tests.rehearsal.report import REPORT
from tests.rehearsal.stack import Stack


def _cache() -> Path:
    """REHEARSAL_CACHE, else ~/.cache/stream-platform-rehearsal: base images, wheelhouses, our dockerd's data."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stream-platform-rehearsal"
    path = Path(os.environ.get("REHEARSAL_CACHE") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _unavailable(reason: str) -> None:
    message = f"rehearsal not run: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def rehearsal_cache() -> Path:
    return _cache()


@pytest.fixture(scope="session")
def docker_engine(rehearsal_cache: Path) -> Iterator[Engine]:
    missing = [tool for tool in ("debootstrap", "ffmpeg", "chromium") if shutil.which(tool) is None
               and not Path(f"/usr/sbin/{tool}").exists()]
    if missing:
        _unavailable(f"{', '.join(missing)} not installed (make system-deps, as root)")
    with ExitStack() as stack:
        try:
            running = stack.enter_context(engine(rehearsal_cache))
        except EngineUnavailable as exc:
            _unavailable(str(exc))
        REPORT["engine"] = "own dockerd" if running.own_pid else f"running engine at {running.host}"
        yield running


@pytest.fixture(scope="session")
def images(docker_engine: Engine, rehearsal_cache: Path) -> Images:
    started = time.monotonic()
    built = build_all(docker_engine, rehearsal_cache, prune=docker_engine.own_pid is not None)
    REPORT["build_s"] = round(time.monotonic() - started, 1)
    REPORT["build_steps_s"] = built.seconds
    REPORT["image_mb"] = {
        name: round(int(docker_engine.docker("image", "inspect", "--format", "{{.Size}}", tag).stdout) / 1e6)
        for name, tag in (("app", built.app), ("nginx-rtmp", built.nginx), ("postgres stand-in", built.postgres),
                          ("kafka stand-in", built.kafka))
    }
    return built


@pytest.fixture(scope="session")
def stack(docker_engine: Engine, images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(docker_engine, images, tmp_path_factory.mktemp("rehearsal"))
    REPORT["project"] = running.project
    try:
        REPORT["up_to_healthy_s"] = round(running.up(), 1)
        yield running
    finally:
        running.down(volumes=True)
        left = running.leftovers()
        if left:
            pytest.fail(f"the rehearsal left {', '.join(left)}", pytrace=False)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print what the issue asks to report (docs/deploy.md keeps the numbers), and keep it as JSON."""
    if not REPORT:
        return
    terminalreporter.section("rehearsal")
    for key, value in REPORT.items():
        terminalreporter.write_line(f"{key}: {json.dumps(value)}")
    (_cache() / "report.json").write_text(json.dumps(REPORT, indent=2) + "\n")
