"""Live RTMP publishers on this host, read from nginx-rtmp's `/stat` through the streams area's adapter.

The presence of a publishing stream is the signal: `bw_*` counters read 0 for the first ~10 s of a stream, so
bandwidth would report a fresh stream as idle. The callback-fed registry is not host-scoped, so the agent asks
its own nginx instead.
"""

from __future__ import annotations

from backend.errors import Unavailable
from backend.streams.nginx import fetch_stat
from backend.vm.signals.base import Reading


class RtmpSignal:
    name = "rtmp"

    def __init__(self, stat_url: str | None) -> None:
        self.stat_url = stat_url

    def sample(self) -> Reading:
        if not self.stat_url:
            return Reading(self.name, "n/a", "nginx-rtmp is not configured here (AUTOSHUTDOWN_NGINX_STAT_URL unset)")
        try:
            streams = fetch_stat(self.stat_url)
        except Unavailable as exc:
            return Reading(self.name, "unknown", str(exc))
        live = [s for s in streams if s.publishing]
        values = {"publishers": [{"stream": f"{s.app}/{s.name}", "seconds": round(s.uptime_s, 1)} for s in live]}
        if not live:
            return Reading(self.name, "idle", "no live RTMP publisher", values)
        listed = ", ".join(f"{s.app}/{s.name} ({s.uptime_s:.0f} s)" for s in live[:5])
        more = f" and {len(live) - 5} more" if len(live) > 5 else ""
        return Reading(self.name, "active", f"{len(live)} live RTMP publisher(s): {listed}{more}", values)
