"""Logged-in sessions (utmp through psutil, like `who`): someone at a shell is using the machine.

psutil (through the C library) reads an absent or unreadable utmp as "nobody is logged in", so the file is opened
first: when it cannot be read the signal is `unknown`, not `idle`. Hosts without utmp set AUTOSHUTDOWN_SSH=false.
"""

from __future__ import annotations

from pathlib import Path

import psutil

from backend.vm.signals.base import Reading

UTMP = Path("/var/run/utmp")
"""glibc's `_PATH_UTMP`, the file psutil.users() reads."""


class SshSignal:
    """`utmp` is the file checked before psutil reads the sessions from glibc's default (the same path)."""

    name = "ssh"

    def __init__(self, utmp: Path = UTMP) -> None:
        self.utmp = utmp

    def sample(self) -> Reading:
        try:
            with self.utmp.open("rb") as file:
                file.read(1)
            users = psutil.users()
        except OSError as exc:
            problem = exc.strerror or type(exc).__name__
            return Reading(self.name, "unknown", f"logged-in sessions could not be read ({self.utmp}: {problem})")
        sessions = [{"user": u.name, "terminal": u.terminal or "", "from": u.host or "local"} for u in users]
        if not sessions:
            return Reading(self.name, "idle", "nobody is logged in", {"sessions": []})
        listed = ", ".join(f"{s['user']}@{s['from']}" for s in sessions[:5])
        return Reading(self.name, "active", f"{len(sessions)} logged-in session(s): {listed}", {"sessions": sessions})
