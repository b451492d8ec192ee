"""Operator-supplied probe commands: exit 0 means active, 1 idle, anything else (or a timeout) unknown."""

from __future__ import annotations

import shlex
import subprocess

from backend.vm.signals.base import Reading


class CommandProbe:
    def __init__(self, command: str, timeout: float = 10.0, name: str | None = None) -> None:
        self.argv = shlex.split(command)
        if not self.argv:
            raise ValueError("a probe command may not be empty")
        self.command, self.timeout = command, timeout
        self.name = name or f"probe:{self.argv[0].rsplit('/', 1)[-1]}"

    def sample(self) -> Reading:
        values = {"command": self.command}
        try:
            done = subprocess.run(self.argv, capture_output=True, text=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            return Reading(self.name, "unknown", f"probe timed out after {self.timeout:g} s", values)
        except OSError as exc:
            return Reading(self.name, "unknown", f"probe could not run ({exc.strerror or type(exc).__name__})", values)
        said = (done.stdout.strip().splitlines() or [""])[-1][:200]
        values["exit_code"] = done.returncode
        detail = f": {said}" if said else ""
        if done.returncode == 0:
            return Reading(self.name, "active", f"probe says active{detail}", values)
        if done.returncode == 1:
            return Reading(self.name, "idle", f"probe says idle{detail}", values)
        return Reading(self.name, "unknown", f"probe exited {done.returncode}{detail}", values)
