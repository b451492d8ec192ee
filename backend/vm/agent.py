"""The auto-shutdown agent: sample the signals, let the policy decide, remember, warn, and stop when due.

One evaluation per poll. Anything that goes wrong inside an evaluation (a database that is down, a broken signal)
leaves the machine running: the agent never stops on doubt.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg

from backend.config import Settings
from backend.errors import Unavailable
from backend.vm import actions
from backend.vm.policy import Countdown, Decision, Policy, Window, after_stop, decide
from backend.vm.signals import Signal, sample_all
from backend.vm.signals.base import boot_time, utc_now
from backend.vm.signals.cpu import CpuSignal
from backend.vm.signals.custom import CommandProbe
from backend.vm.signals.gpu import GpuSignal, GpuThresholds
from backend.vm.signals.network import NetworkSignal
from backend.vm.signals.rtmp import RtmpSignal
from backend.vm.signals.schedule import ScheduleSignal
from backend.vm.signals.ssh import SshSignal
from backend.vm.state import Evaluation, Event, Store, open_store

log = logging.getLogger(__name__)
_PRUNE_EVERY = timedelta(hours=1)


def host_name(settings: Settings) -> str:
    return settings.autoshutdown_host or socket.gethostname()


@dataclass(frozen=True)
class Outcome:
    """One evaluation: the decision and, when a stop was due, what became of it."""

    host: str
    decision: Decision
    stop: Event | None = None


@dataclass
class Agent:
    host: str
    policy: Policy
    signals: list[Signal]
    store: Store
    action: actions.Action
    hooks: list[str] = field(default_factory=list)
    hook_timeout: float = 60.0
    wall: bool = False
    history_days: int = 14
    clock: Callable[[], datetime] = utc_now
    booted_at: Callable[[], datetime] = boot_time
    _pruned_at: datetime | None = None
    _resumed: bool = True
    """Until this process's first evaluation is stored: a countdown found pending is warned again."""

    def evaluate(self) -> Outcome:
        """One poll: readings → decision → records → warning or stop."""
        readings = sample_all(self.signals)
        now, boot = self.clock(), self.booted_at()

        def change(state: Countdown) -> tuple[Countdown, Decision]:
            decision = decide(self.policy, state, now, boot, readings, resumed=self._resumed)
            return decision.state, decision

        decision = self.store.transact(self.host, change)
        self._resumed = False
        self.store.record(Evaluation.of(self.host, decision))
        for kind in decision.events:
            self._announce(kind, decision, boot)
        stop = self._stop(decision) if decision.kind == "stop" else None
        self._prune(now)
        return Outcome(self.host, decision, stop)

    def _announce(self, kind: str, decision: Decision, boot: datetime) -> None:
        if kind == "booted":
            self.store.event(Event(self.host, boot, "booted"))
            return
        detail = {"reasons": list(decision.reasons)}
        if kind == "warning_issued":
            assert decision.stop_at is not None
            message = (
                f"auto-shutdown: {self.host} is idle and stops at {decision.stop_at:%H:%M:%S} UTC "
                f"({self.action.name}) unless activity resumes; snooze or skip in the console"
            )
            log.warning(message)
            if self.wall:
                _wall(message)
            detail["stop_at"] = decision.stop_at.isoformat()
        else:
            log.info("auto-shutdown %s: %s", kind.replace("_", " "), "; ".join(decision.reasons))
        self.store.event(Event(self.host, decision.at, kind, detail))

    def _stop(self, decision: Decision) -> Event:
        failure = actions.run_hooks(self.hooks, self.hook_timeout)
        if failure is not None:
            self.store.transact(self.host, lambda s: (after_stop(s, decision.at), None))
            return self._record_stop("stop_aborted", failure)
        if not self.store.transact(self.host, lambda s: _claim(s, decision)):
            return self._record_stop("stop_cancelled", "snoozed or skipped while the pre-stop hooks ran")
        outcome = self.action.stop()
        kind = "would_stop" if outcome.dry_run else "stopped" if outcome.ok else "stop_failed"
        return self._record_stop(kind, outcome.detail)

    def _record_stop(self, kind: str, detail: str) -> Event:
        (log.info if kind in ("stopped", "would_stop") else log.warning)("auto-shutdown %s: %s", kind, detail)
        event = Event(self.host, self.clock(), kind, {"action": self.action.name, "detail": detail})
        self.store.event(event)
        return event

    def _prune(self, now: datetime) -> None:
        if self._pruned_at is None or now - self._pruned_at >= _PRUNE_EVERY:
            self.store.prune(now - timedelta(days=self.history_days))
            self._pruned_at = now

    def run(self, stop: threading.Event) -> None:
        """Evaluate every poll until `stop` is set."""
        poll = self.policy.poll_seconds
        log.info("auto-shutdown agent on %s: action %s, every %g s", self.host, self.action.name, poll)
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.evaluate()
            except (Unavailable, psycopg.OperationalError) as exc:  # the state database is away: one line a poll
                log.warning("evaluation failed, the machine stays up: state store unreachable (%s)",
                            str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            except Exception:
                log.exception("evaluation failed; the machine stays up")
            stop.wait(max(0.0, poll - (time.monotonic() - started)))


def _claim(state: Countdown, decision: Decision) -> tuple[Countdown, bool]:
    """Take the stop only if no snooze or skip arrived while the hooks ran."""
    if state.stop_at is None or state.stop_at > decision.at or state.warned_at != decision.state.warned_at:
        return state, False
    return after_stop(state, decision.at), True


def _wall(message: str) -> None:
    try:
        subprocess.run(["wall"], input=message, text=True, timeout=10, check=False, capture_output=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.info("wall could not broadcast the warning: %s", exc)


def build_signals(settings: Settings, host: str) -> list[Signal]:
    signals: list[Signal] = [
        RtmpSignal(settings.autoshutdown_nginx_stat_url),
        GpuSignal(
            GpuThresholds(settings.autoshutdown_gpu_util_percent, settings.autoshutdown_gpu_memory_mib),
            host,
            settings.database_url,
            expected=settings.autoshutdown_gpu_expected,
        ),
        CpuSignal(settings.autoshutdown_cpu_busy_percent),
        NetworkSignal(settings.autoshutdown_network_kib_per_s),
        ScheduleSignal(host, settings.database_url, timedelta(seconds=settings.streams_schedule_lead_seconds)),
    ]
    if settings.autoshutdown_ssh:
        signals.append(SshSignal())
    signals.extend(
        CommandProbe(command, settings.autoshutdown_probe_timeout_seconds, name=f"probe{i + 1}")
        for i, command in enumerate(settings.autoshutdown_probes)
    )
    return signals


def build_policy(settings: Settings) -> Policy:
    return Policy(
        idle_seconds=settings.autoshutdown_idle_seconds,
        warn_seconds=settings.autoshutdown_warn_seconds,
        min_uptime_seconds=settings.autoshutdown_min_uptime_seconds,
        poll_seconds=settings.autoshutdown_poll_seconds,
        max_age_seconds=settings.autoshutdown_max_age_seconds,
        windows=tuple(Window.parse(text) for text in settings.autoshutdown_never_stop),
    )


def build_agent(settings: Settings, signals: list[Signal] | None = None) -> Agent:
    """The agent as configured by settings (the CLI's options override them)."""
    host = host_name(settings)
    return Agent(
        host=host,
        policy=build_policy(settings),
        signals=signals if signals is not None else build_signals(settings, host),
        store=open_store(settings),
        action=actions.make_action(settings),
        hooks=list(settings.autoshutdown_hooks),
        hook_timeout=settings.autoshutdown_hook_timeout_seconds,
        wall=settings.autoshutdown_wall,
        history_days=settings.autoshutdown_history_days,
    )
