"""The nginx-rtmp adapter: read `/stat` (XML) and kick publishers through `/control`.

`/stat` lists, per application, the streams being published now with their bandwidth, clients and codec
metadata; a finished stream is simply absent. Run nginx with one worker, or each worker reports its own streams.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import httpx
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from backend.errors import Unavailable

log = logging.getLogger(__name__)
TIMEOUT = httpx.Timeout(3.0)


@dataclass(frozen=True)
class StatStream:
    """One stream as nginx reports it."""

    app: str
    name: str
    uptime_s: float
    bw_in_kbps: float
    bw_video_kbps: float
    bw_audio_kbps: float
    bytes_in: int
    clients: int
    publishing: bool
    publisher_addr: str | None
    width: int | None
    height: int | None
    frame_rate: float | None
    video_codec: str | None
    audio_codec: str | None


def _text(node: ET.Element | None, path: str) -> str | None:
    found = node.find(path) if node is not None else None
    return found.text.strip() if found is not None and found.text and found.text.strip() else None


def _number(node: ET.Element | None, path: str) -> float | None:
    value = _text(node, path)
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def parse_stat(xml: str | bytes) -> list[StatStream]:
    """Parse `/stat` output into streams; malformed XML raises `Unavailable`."""
    try:
        root = SafeET.fromstring(xml)
    except (ET.ParseError, DefusedXmlException) as exc:
        raise Unavailable(f"nginx /stat returned malformed XML: {exc}") from None
    streams = []
    for application in root.iterfind("./server/application"):
        app = _text(application, "name") or ""
        for stream in application.iterfind("./live/stream"):
            publisher = next((c for c in stream.iterfind("client") if c.find("publishing") is not None), None)
            width, height, fps = (_number(stream, f"meta/video/{f}") for f in ("width", "height", "frame_rate"))
            streams.append(StatStream(
                app=app,
                name=_text(stream, "name") or "",
                uptime_s=(_number(stream, "time") or 0.0) / 1000,
                bw_in_kbps=(_number(stream, "bw_in") or 0.0) / 1000,
                bw_video_kbps=(_number(stream, "bw_video") or 0.0) / 1000,
                bw_audio_kbps=(_number(stream, "bw_audio") or 0.0) / 1000,
                bytes_in=int(_number(stream, "bytes_in") or 0),
                clients=int(_number(stream, "nclients") or 0),
                publishing=stream.find("publishing") is not None,
                publisher_addr=_text(publisher, "address"),
                width=int(width) if width else None,
                height=int(height) if height else None,
                frame_rate=fps,
                video_codec=_text(stream, "meta/video/codec"),
                audio_codec=_text(stream, "meta/audio/codec"),
            ))
    return streams


def fetch_stat(stat_url: str) -> list[StatStream]:
    """GET `/stat` and parse it; an unreachable nginx raises `Unavailable`."""
    try:
        response = httpx.get(stat_url, timeout=TIMEOUT)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise Unavailable(f"nginx /stat is unreachable at {stat_url}: {type(exc).__name__}") from None
    return parse_stat(response.content)


def drop_publisher(control_url: str, app: str, name: str) -> int:
    """Kick the publisher of `app/name` via `/control/drop/publisher`; returns how many clients nginx dropped."""
    try:
        response = httpx.get(f"{control_url.rstrip('/')}/drop/publisher", params={"app": app, "name": name},
                             timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        raise Unavailable(f"nginx /control is unreachable at {control_url}: {type(exc).__name__}") from None
    if response.status_code == 404:
        return 0  # nothing published under that name
    if response.status_code >= 400:
        raise Unavailable(f"nginx /control answered {response.status_code} when dropping {app}/{name}")
    body = response.text.strip()
    return int(body) if body.isdigit() else 0
