"""What a due stop does: record it only (`dry-run`), run a command, or stop this GCE instance via the Compute API.

Pre-stop hooks run first; one that fails or overruns its timeout aborts the stop, and the outcome says which.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from dataclasses import dataclass
from typing import Protocol

from backend.config import Settings
from backend.errors import PlatformError
from backend.vm.compute import instances_client
from backend.vm.gce_metadata import InstanceIdentity, this_instance

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StopOutcome:
    ok: bool
    dry_run: bool
    detail: str


class Action(Protocol):
    name: str

    def stop(self) -> StopOutcome: ...


class DryRun:
    name = "dry-run"

    def stop(self) -> StopOutcome:
        return StopOutcome(True, True, "dry run: the machine would have been stopped now")


def _run(command: str, timeout: float) -> tuple[bool, str]:
    """Run a command without a shell; (succeeded, one-line outcome)."""
    try:
        done = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:g} s"
    except OSError as exc:
        return False, f"could not run ({exc.strerror or type(exc).__name__})"
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [""])[-1][:200]
        return False, f"exited {done.returncode}" + (f": {tail}" if tail else "")
    return True, "exited 0"


class Command:
    name = "command"

    def __init__(self, command: str, timeout: float = 60.0) -> None:
        self.command, self.timeout = command, timeout

    def stop(self) -> StopOutcome:
        ok, outcome = _run(self.command, self.timeout)
        return StopOutcome(ok, False, f"`{self.command}` {outcome}")


class GcpStop:
    """Stops this very instance; project, zone and name come from the metadata server."""

    name = "gcp"

    def __init__(self, metadata_host: str, endpoint: str | None = None, *,
                 instance: InstanceIdentity | None = None) -> None:
        """`instance`: who "this" VM is when known without the metadata server (the demo's simulated hosts)."""
        self.metadata_host, self.endpoint, self.instance = metadata_host, endpoint, instance

    def stop(self) -> StopOutcome:
        try:
            me = self.instance or this_instance(self.metadata_host)
            operation = instances_client(self.endpoint).stop(project=me.project, zone=me.zone, instance=me.name)
        except PlatformError as exc:
            return StopOutcome(False, False, str(exc))
        except Exception as exc:
            log.warning("Compute API stop failed: %s", exc)
            return StopOutcome(False, False, f"the Compute API refused the stop ({type(exc).__name__})")
        return StopOutcome(True, False, f"stop requested for {me.path} (operation {operation.name})")


def run_hooks(hooks: list[str], timeout: float) -> str | None:
    """Run pre-stop hooks in order; the first failure's message, or None when all succeeded."""
    for hook in hooks:
        ok, outcome = _run(hook, timeout)
        if not ok:
            return f"pre-stop hook `{hook}` {outcome}: stop aborted"
        log.info("pre-stop hook `%s` %s", hook, outcome)
    return None


def make_action(settings: Settings, kind: str | None = None) -> Action:
    kind = kind or settings.autoshutdown_action
    if kind == "dry-run":
        return DryRun()
    if kind == "command":
        return Command(settings.autoshutdown_command)
    if kind == "gcp":
        return GcpStop(settings.gce_metadata_host, settings.compute_endpoint)
    raise ValueError(f"unknown action {kind!r}")
