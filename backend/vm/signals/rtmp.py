"""Live RTMP publishers on this host, read from nginx-rtmp's `/stat` (parsed by the streams area's adapter).

The presence of a publishing stream is the signal: `bw_*` counters read 0 for the first ~10 s of a stream, so
bandwidth would report a fresh stream as idle. The callback-fed registry is not host-scoped, so the agent asks
its own nginx instead. One HTTP client lives as long as the signal: the agent polls forever, and building a
client per poll cost ~20 ms of CPU each time (bench/bench_agent.py).
"""

from __future__ import annotations

from collections.abc import Collection

import httpx

from backend.errors import Unavailable
from backend.streams.nginx import parse_stat
from backend.vm.signals.base import Reading


class RtmpSignal:
    name = "rtmp"

    def __init__(self, stat_url: str | None, timeout: float = 3.0, *, streams: Collection[str] | None = None) -> None:
        """`streams`: only these stream names count (an nginx shared by several hosts, as in the demo)."""
        self.stat_url, self.streams = stat_url, None if streams is None else frozenset(streams)
        self._client = httpx.Client(timeout=timeout) if stat_url else None

    def sample(self) -> Reading:
        if not self.stat_url or self._client is None:
            return Reading(self.name, "n/a", "nginx-rtmp is not configured here (AUTOSHUTDOWN_NGINX_STAT_URL unset)")
        try:
            response = self._client.get(self.stat_url)
            response.raise_for_status()
            streams = parse_stat(response.content)
        except httpx.HTTPError as exc:
            problem = f"nginx /stat at {self.stat_url} did not answer ({type(exc).__name__})"
            return Reading(self.name, "unknown", problem)
        except Unavailable as exc:
            return Reading(self.name, "unknown", str(exc))
        live = [s for s in streams if s.publishing and (self.streams is None or s.name in self.streams)]
        values = {"publishers": [{"stream": f"{s.app}/{s.name}", "seconds": round(s.uptime_s, 1)} for s in live]}
        if not live:
            return Reading(self.name, "idle", "no live RTMP publisher", values)
        listed = ", ".join(f"{s.app}/{s.name} ({s.uptime_s:.0f} s)" for s in live[:5])
        more = f" and {len(live) - 5} more" if len(live) > 5 else ""
        return Reading(self.name, "active", f"{len(live)} live RTMP publisher(s): {listed}{more}", values)
