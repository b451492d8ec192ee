"""Real nginx-rtmp, the real API (uvicorn in a subprocess) and ffmpeg publishers, on free loopback ports.

Everything started here is stopped by the owning fixture; nothing else is ever signalled.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from backend.embedded.ports import free_port, wait_for_port
from backend.streams.nginx_config import RenderOptions, render

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
UPDATE_TIMEOUT_S = 3


def tools_missing() -> list[str]:
    missing = [tool for tool in (NGINX, FFMPEG) if not Path(tool).exists()]
    if not Path("/usr/lib/nginx/modules/ngx_rtmp_module.so").exists():
        missing.append("libnginx-mod-rtmp")
    return missing


@dataclass
class ApiProcess:
    """`backend.api_app:create_app` under uvicorn, in its own process, with the given environment."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    access_log: bool = False  # uvicorn's access log (at level info) into `log_path`
    _proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server process (started)."""
        assert self._proc is not None, "not started"
        return self._proc.pid

    def start(self) -> None:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "backend.api_app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "info" if self.access_log else "warning",
             "--access-log" if self.access_log else "--no-access-log"],
            env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, timeout=30)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None


@dataclass
class NginxRtmp:
    """nginx with the rendered platform config under `prefix` (`nginx -p PREFIX`), calling the API at `callback_url`
    with `callback_token`."""

    prefix: Path
    callback_url: str
    callback_token: str
    rtmp_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    _proc: subprocess.Popen | None = None

    @property
    def stat_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/stat"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/control"

    def rtmp_url(self, path: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/{path}"

    def start(self) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        config = render(RenderOptions(prefix=self.prefix, callback_url=self.callback_url,
                                      callback_token=self.callback_token,
                                      rtmp_listen=f"127.0.0.1:{self.rtmp_port}",
                                      http_listen=f"127.0.0.1:{self.http_port}",
                                      update_timeout=f"{UPDATE_TIMEOUT_S}s", play_control=True))
        (self.prefix / "nginx.conf").write_text(config)
        self._proc = subprocess.Popen([NGINX, "-p", str(self.prefix), "-c", "nginx.conf", "-e", "error.log"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for_port(self.rtmp_port)
        wait_for_port(self.http_port)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGQUIT)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def stat_xml(self) -> str:
        return httpx.get(self.stat_url, timeout=3).text

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.prefix.glob("*.log"))


def publish(url: str, seconds: float, *, realtime: bool = True) -> subprocess.Popen:
    """An ffmpeg publisher of a test pattern with a tone; it exits 0 after `seconds`, non-zero when refused."""
    args = [FFMPEG, "-nostdin", "-loglevel", "error"]
    if realtime:
        args.append("-re")
    args += ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=15", "-f", "lavfi", "-i", "sine", "-t", str(seconds),
             "-c:v", "libx264", "-preset", "ultrafast", "-g", "15", "-c:a", "aac", "-f", "flv", url]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def publish_and_wait(url: str, seconds: float = 1, timeout: float = 30) -> int:
    """Publish a short clip; the exit status (0 accepted, non-zero refused)."""
    proc = publish(url, seconds, realtime=False)
    try:
        return proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_until(predicate, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
