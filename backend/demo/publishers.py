"""The demo's live streams: keys issued by the streams service, ffmpeg test-pattern publishers (video test source
plus a tone) against the demo's nginx-rtmp, and the refused attempts that fill the publish-attempt log.

Each stream is bound to the VM that carries it, gpu-node-02 (the key's `vm` label; `STREAMS_HOST` for the
callbacks' registry), so that host's auto-shutdown agent counts it as a live publisher. A publisher is started
once: kicked from the console or cut off by a revoked key, it stays down (the demo never restarts it). ffmpeg runs
with `-loglevel quiet` because its errors print the publish URL, and the URL carries the key.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from dataclasses import dataclass

from backend.config import Settings
from backend.identity.principal import SYSTEM
from backend.streams import service as streams

log = logging.getLogger(__name__)

DEMO_LABEL = ("demo", "publisher")
ATTEMPT_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Publisher:
    stream: str
    vm: str
    size: str
    fps: int
    kbps: int


STREAM_VM = "gpu-node-02"
PUBLISHERS: tuple[Publisher, ...] = (
    Publisher("studio-a", STREAM_VM, "640x360", 30, 900),
    Publisher("studio-b", STREAM_VM, "480x270", 25, 600),
    Publisher("lobby-cam", STREAM_VM, "320x240", 15, 300),
)
WRONG_KEY_STREAM, LOCKOUT_STREAM = "studio-a", "backstage"


def stream_hosts() -> dict[str, str]:
    """stream name → the VM that carries it."""
    return {p.stream: p.vm for p in PUBLISHERS}


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None


def ffmpeg_argv(url: str, size: str = "320x240", fps: int = 15, kbps: int = 300,
                seconds: float | None = None) -> tuple[str, ...]:
    """A test pattern with a 1 kHz tone, encoded in real time (FIELD_NOTES: the publisher command)."""
    length = ("-t", f"{seconds:g}") if seconds is not None else ()
    return ("ffmpeg", "-nostdin", "-loglevel", "quiet", "-re",
            "-f", "lavfi", "-i", f"testsrc=size={size}:rate={fps}", "-f", "lavfi", "-i", "sine=frequency=1000",
            *length, "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(2 * fps),
            "-b:v", f"{kbps}k", "-c:a", "aac", "-b:a", "64k", "-f", "flv", url)


def publish_url(rtmp_port: int, stream: str, key: str) -> str:
    return f"rtmp://127.0.0.1:{rtmp_port}/live/{stream}?key={key}"


def issue_keys(settings: Settings) -> dict[str, str]:
    """A fresh key per demo stream (earlier demo keys are revoked first); stream → the key, shown nowhere."""
    for key in streams.list_keys(SYSTEM, settings=settings):
        if key.labels.get(DEMO_LABEL[0]) == DEMO_LABEL[1]:
            streams.revoke_key(SYSTEM, key.id, settings=settings)
    issued = {}
    for p in PUBLISHERS:
        key = streams.create_key(SYSTEM, p.stream, owner="demo", labels={"vm": p.vm, DEMO_LABEL[0]: DEMO_LABEL[1]},
                                 settings=settings)
        issued[p.stream] = key.secret
    return issued


def publisher_argvs(rtmp_port: int, keys: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """stream → the endless ffmpeg command that publishes it."""
    return {p.stream: ffmpeg_argv(publish_url(rtmp_port, p.stream, keys[p.stream]), p.size, p.fps, p.kbps)
            for p in PUBLISHERS}


def refused_attempts(rtmp_port: int, settings: Settings) -> int:
    """One publish with a wrong key, then wrong keys on another stream until this address is locked out (the
    lockout threshold and one more, refused while locked). Returns how many attempts were refused."""
    refused = 0
    plan = [WRONG_KEY_STREAM] + [LOCKOUT_STREAM] * settings.streams_lockout_threshold
    for n, stream in enumerate(plan):
        argv = ffmpeg_argv(publish_url(rtmp_port, stream, f"not-the-key-{n}"), seconds=2)
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=ATTEMPT_TIMEOUT_S,
                                  check=False)
        except subprocess.TimeoutExpired:
            continue
        refused += done.returncode != 0
    return refused


def wait_live(settings: Settings, wanted: set[str], timeout_s: float = 30.0) -> set[str]:
    """The wanted streams that nginx reports live within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    live: set[str] = set()
    while time.monotonic() < deadline:
        live = {s.stream for s in streams.live_streams(SYSTEM, settings=settings)} & wanted
        if live == wanted:
            break
        time.sleep(0.5)
    return live
