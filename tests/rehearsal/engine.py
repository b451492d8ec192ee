"""The Docker Engine the rehearsal drives: the one that answers, or a `dockerd` of our own, stopped by its PID.

Our own daemon keeps its data root in the rehearsal cache, so base images, stand-ins and build layers survive
from one run to the next; its socket, pidfile and exec root sit next to it. The default bridge is off
(`--bridge none`): the stack's own compose networks are the only networks it creates.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 60.0
LOCK_WAIT_S = 1800.0


class EngineUnavailable(RuntimeError):
    """No engine answers and this machine cannot start one; the message says why in one line."""


def docker_cli() -> str:
    cli = shutil.which("docker")
    if cli is None:
        raise EngineUnavailable("no docker CLI on PATH: install Debian's docker.io (make system-deps, as root)")
    return cli


@dataclass(frozen=True)
class Engine:
    host: str
    """DOCKER_HOST for every client: unix:///…/docker.sock"""
    own_pid: int | None
    """The dockerd this rehearsal started, or None when it reused a running engine."""

    @property
    def socket(self) -> Path:
        return Path(self.host.removeprefix("unix://"))

    def env(self) -> dict[str, str]:
        """The environment for docker and compose commands: this engine, the classic builder."""
        return {**os.environ, "DOCKER_HOST": self.host, "DOCKER_BUILDKIT": "0", "DOCKER_CLI_HINTS": "false"}

    def docker(self, *args: str, timeout: float = 600, check: bool = True,
               input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run([docker_cli(), *args], env=self.env(), capture_output=True, timeout=timeout,
                                input=input)
        if check and result.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args[:3])} failed: {result.stderr.decode(errors='replace')[-2000:]}")
        return result


def _answers(host: str) -> bool:
    try:
        result = subprocess.run([docker_cli(), "version", "--format", "{{.Server.APIVersion}}"], capture_output=True,
                                env={**os.environ, "DOCKER_HOST": host}, timeout=15)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def _existing_engine() -> str | None:
    host = os.environ.get("DOCKER_HOST")
    if host:
        return host if _answers(host) else None
    default = Path("/var/run/docker.sock")
    return f"unix://{default}" if default.exists() and _answers(f"unix://{default}") else None


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """One rehearsal at a time per cache: two daemons cannot share a data root."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        deadline = time.monotonic() + LOCK_WAIT_S
        announced = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced:
                    print(f"rehearsal: another rehearsal holds {lock_path}; waiting for it", flush=True)
                    announced = True
                if time.monotonic() > deadline:
                    raise EngineUnavailable(f"another rehearsal held {lock_path} for {LOCK_WAIT_S:.0f}s") from None
                time.sleep(2)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _start_dockerd(state: Path) -> tuple[str, int]:
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if not Path(dockerd).exists():
        raise EngineUnavailable("no Docker Engine answers and dockerd is not installed: install Debian's docker.io "
                                "(make system-deps, as root)")
    pidfile = state / "docker.pid"
    if pidfile.exists():
        stale = int(pidfile.read_text().strip() or 0)
        if stale and Path(f"/proc/{stale}").exists():
            raise EngineUnavailable(f"dockerd {stale} from an earlier rehearsal still runs on {state}: stop it first")
        pidfile.unlink()
    host = f"unix://{state / 'docker.sock'}"
    log = open(state / "dockerd.log", "ab")  # noqa: SIM115 — dockerd writes to it for its whole life
    process = subprocess.Popen(
        [dockerd, "--data-root", str(state / "data"), "--exec-root", str(state / "exec"), "--pidfile", str(pidfile),
         "--host", host, "--bridge", "none", "--log-level", "warn"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers(host):
        if process.poll() is not None:
            tail = (state / "dockerd.log").read_text(errors="replace")[-800:]
            raise EngineUnavailable(f"dockerd exited with status {process.returncode}: {tail.strip()}")
        if time.monotonic() > deadline:
            _stop(process.pid)
            raise EngineUnavailable(f"dockerd did not answer on {host} within {START_TIMEOUT_S:.0f}s")
        time.sleep(0.5)
    return host, process.pid


def _unmount_below(root: Path) -> None:
    """dockerd 20.10 leaves its default network namespace bind-mounted under the exec root when it exits."""
    prefix = f"{root}/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", point], capture_output=True, timeout=30)


def _stop(pid: int) -> None:
    """SIGTERM the dockerd we started (it stops its containerd), then SIGKILL if it hangs."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            finished = pid if not Path(f"/proc/{pid}").exists() else 0
        if finished:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


@contextmanager
def engine(cache: Path) -> Iterator[Engine]:
    """The running engine, or our own dockerd for the duration of the block."""
    host = _existing_engine()
    if host:
        yield Engine(host, None)
        return
    if os.geteuid() != 0:
        raise EngineUnavailable("no Docker Engine answers and starting dockerd needs root")
    state = cache / "engine"
    with _exclusive(cache / "engine.lock"):
        state.mkdir(parents=True, exist_ok=True)
        host, pid = _start_dockerd(state)
        try:
            yield Engine(host, pid)
        finally:
            _stop(pid)
            _unmount_below(state / "exec")
