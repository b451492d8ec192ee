"""A fake GCE VM for `infrastructure/scripts/startup.sh`: the metadata server and Secret Manager's REST API on a
loopback port, and stub `docker`, `systemctl`, `nvidia-smi`, `nvidia-ctk` and `systemd-cat` that record their calls.

Secret Manager answers like it does for the VM's service account: each secret can be accessed, listing is
denied (403). The script runs for real (bash, curl, python3); only the host-changing commands are stubs.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STARTUP = ROOT / "infrastructure" / "scripts" / "startup.sh"
PROJECT, PREFIX = "demo-project", "stream-platform-"
STUBS = {
    "docker": 'echo "docker $*" >>"$CALLS"',
    "systemctl": 'echo "systemctl $*" >>"$CALLS"',
    "systemd-cat": 'cat >>"$CALLS"',
    "nvidia-ctk": 'echo "nvidia-ctk $*" >>"$CALLS"',
    "apt-get": 'echo "apt-get $*" >>"$CALLS"; exit 1',
    "nvidia-smi": 'if [ "$1" = -L ]; then echo "GPU 0: NVIDIA L4 (UUID: GPU-1)"; else echo "NVIDIA L4, 550.54"; fi',
}


@dataclass
class FakeVm:
    secrets: dict[str, str | None]
    """secret id → value (None: the secret exists without an enabled version)"""
    token_works: bool = True
    requests: list[str] = field(default_factory=list)

    def metadata(self, path: str) -> str | None:
        attributes = {
            "project/project-id": PROJECT,
            "instance/attributes/platform-image": "registry.example/stream-platform:1.0",
            "instance/attributes/platform-secret-prefix": PREFIX,
            "instance/attributes/platform-secret-ids": ",".join(self.secrets),
        }
        if path == "instance/service-accounts/default/token":
            return json.dumps({"access_token": "fake-token", "expires_in": 3600}) if self.token_works else None
        return attributes.get(path)

    def secret_version(self, path: str) -> tuple[int, str]:
        """Secret Manager: `…/secrets/NAME/versions/latest:access` or the list call, which is denied."""
        parts = path.split("?")[0].split("/")
        if parts[-1] == "secrets":
            return 403, json.dumps({"error": {"code": 403, "status": "PERMISSION_DENIED"}})
        name = parts[parts.index("secrets") + 1]
        value = self.secrets.get(name.removeprefix(PREFIX)) if name.startswith(PREFIX) else None
        if value is None:
            return 404, json.dumps({"error": {"code": 404, "status": "NOT_FOUND"}})
        return 200, json.dumps({"payload": {"data": base64.b64encode(value.encode()).decode()}})


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str
    calls: list[str]
    units: dict[str, str]
    env_file: Path
    requests: list[str]


@contextmanager
def _serve(vm: FakeVm) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            vm.requests.append(self.path)
            if self.path.startswith("/computeMetadata/v1/"):
                body = vm.metadata(self.path.removeprefix("/computeMetadata/v1/"))
                ok = body is not None and self.headers.get("Metadata-Flavor") == "Google"
                status, text = (200, body) if ok else (404 if body is None else 403, "")
            elif self.path.startswith("/v1/") and self.headers.get("Authorization") == "Bearer fake-token":
                status, text = vm.secret_version(self.path)
            else:
                status, text = 401, ""
            data = (text or "").encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            """Requests are kept in `vm.requests`."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_startup(vm: FakeVm, workdir: Path) -> Run:
    """startup.sh against the fake VM, with its config and unit directories under `workdir`."""
    stubs = workdir / "bin"
    stubs.mkdir(parents=True)
    for name, body in STUBS.items():
        (stubs / name).write_text(f"#!/usr/bin/env bash\n{body}\n")
        (stubs / name).chmod(0o755)
    calls, conf, units = workdir / "calls.log", workdir / "etc", workdir / "units"
    calls.touch()
    with _serve(vm) as base:
        env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "CALLS": str(calls),
               "METADATA_URL": f"{base}/computeMetadata/v1", "SECRET_MANAGER_URL": f"{base}/v1",
               "CONF_DIR": str(conf), "UNIT_DIR": str(units)}
        result = subprocess.run(["bash", str(STARTUP)], env=env, capture_output=True, text=True, timeout=120)
    return Run(
        returncode=result.returncode, output=result.stdout + result.stderr, calls=calls.read_text().splitlines(),
        units={p.stem: p.read_text() for p in sorted(units.glob("*.service"))} if units.exists() else {},
        env_file=conf / "secrets.env", requests=list(vm.requests),
    )


def docker_run_args(unit: str) -> list[str]:
    """The options of a unit's `docker run` between its env file and the image: what the container is given."""
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    words = exec_start.split()
    start = words.index("--env-file") + 2
    end = next(i for i, w in enumerate(words) if i >= start and not w.startswith("-")
               and words[i - 1] not in ("--gpus", "-v", "--network", "--pid"))
    return words[start:end]
