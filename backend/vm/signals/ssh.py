"""Logged-in sessions (utmp through psutil, like `who`): someone at a shell is using the machine."""

from __future__ import annotations

import psutil

from backend.vm.signals.base import Reading


class SshSignal:
    name = "ssh"

    def sample(self) -> Reading:
        try:
            users = psutil.users()
        except OSError as exc:
            return Reading(self.name, "unknown", f"logged-in sessions could not be read ({type(exc).__name__})")
        sessions = [{"user": u.name, "terminal": u.terminal or "", "from": u.host or "local"} for u in users]
        if not sessions:
            return Reading(self.name, "idle", "nobody is logged in", {"sessions": []})
        listed = ", ".join(f"{s['user']}@{s['from']}" for s in sessions[:5])
        return Reading(self.name, "active", f"{len(sessions)} logged-in session(s): {listed}", {"sessions": sessions})
