"""A real nginx-rtmp and a real ffmpeg publisher: a live stream keeps the VM up; idleness starts when it ends."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backend.config import Settings
from backend.embedded.ports import free_port, wait_for_port
from backend.streams.nginx import parse_stat
from backend.vm.actions import DryRun
from backend.vm.agent import Agent
from backend.vm.policy import Policy
from backend.vm.signals.rtmp import RtmpSignal
from backend.vm.state import DbStore

MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
pytestmark = pytest.mark.skipif(
    not (shutil.which("nginx") and shutil.which("ffmpeg") and MODULE.exists()),
    reason="needs Debian nginx, libnginx-mod-rtmp and ffmpeg",
)

CONF = """
load_module {module};
daemon off;
worker_processes 1;
pid logs/nginx.pid;
error_log logs/error.log;
{user}
events {{ worker_connections 64; }}
rtmp {{
    server {{
        listen 127.0.0.1:{rtmp};
        access_log off;
        application live {{ live on; record off; }}
    }}
}}
http {{
    access_log off;
    client_body_temp_path tmp/client; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
    server {{
        listen 127.0.0.1:{http};
        location /stat {{ rtmp_stat all; }}
    }}
}}
"""


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Our own nginx with rtmp and /stat on free loopback ports; yields (rtmp base URL, stat URL)."""
    prefix = tmp_path / "nginx"
    for sub in ("conf", "logs", "tmp"):
        (prefix / sub).mkdir(parents=True)
    rtmp, http = free_port(), free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    (prefix / "conf" / "nginx.conf").write_text(CONF.format(module=MODULE, user=user, rtmp=rtmp, http=http))
    process = subprocess.Popen(
        ["nginx", "-p", str(prefix), "-c", "conf/nginx.conf", "-e", "logs/error.log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(http, timeout=10)
        wait_for_port(rtmp, timeout=10)
        yield f"rtmp://127.0.0.1:{rtmp}/live", f"http://127.0.0.1:{http}/stat"
    finally:
        process.terminate()
        process.wait(timeout=10)


def publish(rtmp_base: str, name: str, seconds: int) -> subprocess.Popen:
    return subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10",
         "-f", "lavfi", "-i", "sine", "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
         "-f", "flv", f"{rtmp_base}/{name}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


def wait_for(predicate, timeout: float, interval: float = 0.25):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def test_live_publisher_keeps_the_vm_up_and_idleness_starts_when_it_stops(
    nginx: tuple[str, str], settings: Settings
) -> None:
    rtmp_base, stat_url = nginx
    store = DbStore(settings.require_database_url())
    agent = Agent(
        host="rtmp-host", policy=Policy(idle_seconds=3, warn_seconds=1, min_uptime_seconds=0, poll_seconds=0.5),
        signals=[RtmpSignal(stat_url)], store=store, action=DryRun(),
    )
    assert agent.evaluate().decision.kind == "idle"

    publisher = publish(rtmp_base, "cam1", 8)
    try:
        live = wait_for(lambda: (o := agent.evaluate()).decision.kind == "active" and o, timeout=10)
        assert any("live/cam1" in reason for reason in live.decision.reasons)
        during = []
        while publisher.poll() is None:
            during.append(agent.evaluate().decision)
            time.sleep(0.5)
        assert publisher.returncode == 0, publisher.stderr.read().decode() if publisher.stderr else ""
    finally:
        if publisher.poll() is None:
            publisher.kill()
    ended_at = time.time()
    assert during and all(d.kind == "active" and d.idle_since is None for d in during[:-2])

    first_idle = wait_for(lambda: (o := agent.evaluate()).decision.kind != "active" and o, timeout=10)
    assert first_idle.decision.idle_since is not None and first_idle.decision.idle_since.timestamp() >= ended_at - 1
    stop = wait_for(lambda: (o := agent.evaluate()).stop and o, timeout=15)
    assert stop.stop.kind == "would_stop"
    assert stop.decision.at.timestamp() - first_idle.decision.idle_since.timestamp() >= 3
    kinds = [e.kind for e in store.events("rtmp-host")]
    assert "warning_issued" in kinds and "would_stop" in kinds


def test_stat_page_parsing_and_nginx_down_is_unknown(nginx: tuple[str, str]) -> None:
    _, stat_url = nginx
    assert parse_stat(httpx.get(stat_url).text) == []
    reading = RtmpSignal(f"http://127.0.0.1:{free_port()}/stat").sample()
    assert reading.state == "unknown" and reading.blocks
    assert RtmpSignal(None).sample().state == "n/a"
