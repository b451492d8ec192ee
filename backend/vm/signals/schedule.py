"""Scheduled streams on this host: active from the lead time before a scheduled window (minus its grace) until the
window and its grace end, so auto-shutdown never stops a VM an operator has booked, even before anyone publishes.

The schedule lives in the database (`stream_schedules`, backend.streams.schedules); without one the signal is
n/a, and a database that does not answer reads unknown (which blocks: doubt never stops a machine).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import psycopg

from backend.db.connection import connect_url
from backend.streams.schedules import vm_windows
from backend.vm.signals.base import Reading, utc_now


class ScheduleSignal:
    name = "schedule"

    def __init__(self, host: str, database_url: str | None, lead: timedelta,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.host, self.database_url, self.lead, self.clock = host, database_url, lead, clock

    def sample(self) -> Reading:
        if not self.database_url:
            return Reading(self.name, "n/a", "no database: scheduled streams are not known here")
        try:
            with connect_url(self.database_url, connect_timeout=5) as conn:
                booked = vm_windows(conn, self.host, self.lead, self.clock())
        except psycopg.Error as exc:
            return Reading(self.name, "unknown", f"scheduled streams could not be read ({type(exc).__name__})")
        if not booked:
            return Reading(self.name, "idle", "no scheduled stream now")
        listed = ", ".join(f"{s.name!r} ({s.app}/{s.stream}) {s.starts_at:%H:%M}-{s.ends_at:%H:%M} UTC"
                           for s in booked[:3])
        values = {"schedules": [s.id for s in booked]}
        return Reading(self.name, "active", f"scheduled stream: {listed}", values)
