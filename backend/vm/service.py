"""What the console, the API and the CLI call: VM status and start/stop, containers, and the auto-shutdown
agent's state with snooze and skip. Authorization and auditing happen here, whoever the caller is.

Roles: viewers read VM, container and agent status; operators start/stop VMs, read logs, restart containers,
snooze and skip. Every change is written to the audit log (a change that cannot be audited is not made).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg

from backend import audit
from backend.config import Settings, get_settings
from backend.costs.savings import HostRates
from backend.db import connect
from backend.db.connection import query_connection
from backend.errors import InvalidInput, NotFound, PlatformError
from backend.identity.principal import PermissionDenied, Principal, Role, require_role
from backend.streams import schedules
from backend.vm import policy
from backend.vm.agent import build_policy, host_name
from backend.vm.compute import GcpInstances, Instances, LocalHost, VmInstance
from backend.vm.containers import ContainerInfo, DockerHost
from backend.vm.policy import Countdown, Policy
from backend.vm.replay import (
    HostReplay,
    PolicyChanges,
    ReplayResult,
    ReplayStop,
    describe,
    load_history,
    replay_history,
    replay_hosts,
)
from backend.vm.state import Evaluation, Event, open_store

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_SNOOZE_SECONDS = 24 * 3600


def _audit(settings: Settings, **entry: Any) -> None:
    with connect(settings, autocommit=True) as conn:
        audit.record(conn, area="vm", **entry)


def _audited(
    settings: Settings, principal: Principal, action: str, target: str, work: Callable[[], T], *,
    audited_error: str | None = None, **detail: Any
) -> T:
    """Check operator rights, do the work and audit the outcome (denied, error or ok). `audited_error`: the error
    this same work last failed with, audited then (a retry): failing the same way again is not audited twice."""
    settings.require_database_url()
    try:
        require_role(principal, Role.operator, f"{action.replace('.', ' ')} {target}")
    except PermissionDenied:
        _audit(settings, actor=principal.name, action=action, target=target, outcome="denied", detail=detail)
        raise
    try:
        result = work()
    except PlatformError as exc:
        if str(exc) != audited_error:
            _audit(settings, actor=principal.name, action=action, target=target, outcome="error",
                   detail=detail | {"error": str(exc)})
        raise
    _audit(settings, actor=principal.name, action=action, target=target, outcome="ok", detail=detail)
    return result


# -- VMs ---------------------------------------------------------------------------------------------------------


def _provider(settings: Settings) -> Instances:
    """GCP instances of `GCP_PROJECT_ID` (VM_PROVIDER=gcp) or this host (local, the embedded default)."""
    if settings.vm_provider == "local":
        return LocalHost()
    if not settings.gcp_project_id:
        raise InvalidInput("VM_PROVIDER=gcp needs GCP_PROJECT_ID")
    return GcpInstances(
        settings.gcp_project_id, endpoint=settings.compute_endpoint, label_filter=settings.vm_label_filter,
        default_zone=settings.gcp_zone,
    )


def list_vms(principal: Principal, *, settings: Settings | None = None) -> list[VmInstance]:
    """The platform's VMs with the latest auto-shutdown decision of each (from the agents' records)."""
    settings = settings or get_settings()
    require_role(principal, Role.viewer, "list VMs")
    vms = _provider(settings).list()
    if not settings.database_url or not vms:
        return vms
    with query_connection(settings) as conn:
        latest = _latest_decisions(conn, [vm.name for vm in vms])
    return [replace(vm, autoshutdown=latest.get(vm.name)) for vm in vms]


def _latest_decisions(conn: psycopg.Connection, hosts: list[str]) -> dict[str, str]:
    rows = conn.execute(
        """SELECT DISTINCT ON (host) host, decision, reasons FROM vm_evaluations
           WHERE host = ANY(%s) ORDER BY host, at DESC, id DESC""",
        (hosts,),
    ).fetchall()
    return {r["host"]: r["decision"] + (f": {r['reasons'][-1]}" if r["reasons"] else "") for r in rows}


def start_vm(principal: Principal, name: str, zone: str | None = None, *, settings: Settings | None = None) -> str:
    """Start a VM (operator+, audited); returns its zone."""
    return _start(settings or get_settings(), principal, name, zone)


def _start(settings: Settings, principal: Principal, name: str, zone: str | None, *,
           audited_error: str | None = None, **detail: Any) -> str:
    provider = _provider(settings)
    return _audited(settings, principal, "vm.start", name, lambda: provider.start(name, zone),
                    audited_error=audited_error, zone=zone, provider=provider.provider, **detail)


def stop_vm(principal: Principal, name: str, zone: str | None = None, *, settings: Settings | None = None) -> str:
    """Stop a VM (operator+, audited); returns its zone."""
    settings = settings or get_settings()
    provider = _provider(settings)
    return _audited(settings, principal, "vm.stop", name, lambda: provider.stop(name, zone),
                    zone=zone, provider=provider.provider)


# -- containers --------------------------------------------------------------------------------------------------


def _docker(settings: Settings) -> DockerHost:
    return DockerHost(settings.docker_host)


def list_containers(principal: Principal, *, settings: Settings | None = None) -> list[ContainerInfo]:
    """Containers on this host; `Unavailable("Docker engine not reachable at …")` without an engine."""
    settings = settings or get_settings()
    require_role(principal, Role.viewer, "list containers")
    return _docker(settings).list()


def container_logs(principal: Principal, name: str, tail: int = 200, *, settings: Settings | None = None) -> str:
    """The last `tail` lines of a container's stdout and stderr (operator+: logs may hold sensitive data)."""
    settings = settings or get_settings()
    require_role(principal, Role.operator, f"read the logs of container {name}")
    if not 1 <= tail <= 10_000:
        raise InvalidInput("tail must be between 1 and 10000 lines")
    return _docker(settings).logs(name, tail)


def restart_container(principal: Principal, name: str, *, settings: Settings | None = None) -> ContainerInfo:
    """Restart a container (operator+, audited)."""
    settings = settings or get_settings()
    return _audited(settings, principal, "container.restart", name, lambda: _docker(settings).restart(name))


# -- auto-shutdown agent -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentStatus:
    """One host's agent: the countdown, the latest evaluation (the "why (not) idle" view) and recent events."""

    host: str
    state: Countdown
    latest: Evaluation | None
    events: list[Event]

    def seconds_left(self, now: datetime | None = None) -> float | None:
        """Seconds until the announced stop, for the console's countdown; None when no stop is announced."""
        if self.state.stop_at is None:
            return None
        return max((self.state.stop_at - (now or datetime.now(UTC))).total_seconds(), 0.0)


def agent_hosts(principal: Principal, *, settings: Settings | None = None) -> list[str]:
    """Hosts whose agents report to the database, for the console's host picker."""
    settings = settings or get_settings()
    require_role(principal, Role.viewer, "view auto-shutdown status")
    if not settings.database_url:
        return [host_name(settings)]
    with query_connection(settings) as conn:
        return [r["host"] for r in conn.execute("SELECT host FROM vm_agent_state ORDER BY host")]


def agent_status(
    principal: Principal, host: str | None = None, *, events: int = 20, settings: Settings | None = None
) -> AgentStatus:
    settings = settings or get_settings()
    require_role(principal, Role.viewer, "view auto-shutdown status")
    host = host or host_name(settings)
    store = open_store(settings)
    latest = store.evaluations(host, limit=1)
    return AgentStatus(host, store.load(host), latest[0] if latest else None, store.events(host, limit=events))


def history(principal: Principal, host: str | None = None, limit: int = 100, *,
            settings: Settings | None = None) -> list[Evaluation]:
    """Recent evaluations, newest first."""
    settings = settings or get_settings()
    require_role(principal, Role.viewer, "view auto-shutdown history")
    return open_store(settings).evaluations(host or host_name(settings), limit=limit)


def _change_countdown(
    principal: Principal, host: str | None, settings: Settings | None, kind: str,
    change: Callable[[Countdown, datetime], Countdown], **detail: Any,
) -> Countdown:
    settings = settings or get_settings()
    host = host or host_name(settings)
    store, now = open_store(settings), datetime.now(UTC)

    def apply(state: Countdown) -> tuple[Countdown, Countdown]:
        changed = change(state, now)
        return changed, changed

    def work() -> Countdown:
        new = store.transact(host, apply)
        store.event(Event(host, now, kind, {"by": principal.name, **detail}))
        return new

    if settings.database_url:
        return _audited(settings, principal, f"autoshutdown.{kind}", host, work, **detail)
    require_role(principal, Role.operator, f"{kind} the auto-shutdown of {host}")
    return work()


def snooze(
    principal: Principal, seconds: float, host: str | None = None, *, settings: Settings | None = None
) -> Countdown:
    """Hold the stop `seconds` beyond the announced one (operator+, audited); a new warning precedes it."""
    if not 0 < seconds <= MAX_SNOOZE_SECONDS:
        raise InvalidInput(f"snooze seconds must be between 1 and {MAX_SNOOZE_SECONDS}")
    return _change_countdown(principal, host, settings, "snoozed", lambda s, now: policy.snooze(s, now, seconds),
                             seconds=seconds)


def skip(principal: Principal, host: str | None = None, *, settings: Settings | None = None) -> Countdown:
    """Drop the current countdown (operator+, audited): a full idle period must pass again."""
    return _change_countdown(principal, host, settings, "skipped", policy.skip)


# -- scheduled streams: start the VM ahead of the window ------------------------------------------------------------

SCHEDULER = Principal("stream-scheduler", Role.operator)
"""Who the audit log names for VM starts made for scheduled streams."""


@dataclass(frozen=True)
class ScheduledStart:
    schedule_id: int
    name: str
    vm: str
    starts_at: datetime
    error: str | None = None
    retry_at: datetime | None = None
    """After a failed start: the next try is not before then."""


def start_scheduled_vms(settings: Settings | None = None, *, now: datetime | None = None) -> list[ScheduledStart]:
    """Start the VM of every scheduled stream due within `STREAMS_SCHEDULE_LEAD_SECONDS` (a background job:
    `stream-platform vm start-scheduled`). Each start goes through the VM service (audited as `stream-scheduler`).
    A failed one is recorded on the schedule and tried again after a back-off (`schedules.START_RETRY`); its
    failure is audited and logged when it first happens and whenever its error changes (not on every try), and a
    start that finally works says after how many."""
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    lead = timedelta(seconds=settings.streams_schedule_lead_seconds)
    with connect(settings, autocommit=True) as conn:
        due = schedules.due_starts(conn, lead, now)
    done = []
    for schedule in due:
        failed_before = schedule.vm_start_failures
        try:
            _start(settings, SCHEDULER, schedule.vm, schedule.zone, audited_error=schedule.vm_start_error,
                   schedule=schedule.id, **({"failed_tries_before": failed_before} if failed_before else {}))
            error = None
        except PlatformError as exc:
            error = str(exc)
        with connect(settings, autocommit=True) as conn:
            retry_at = schedules.mark_started(conn, schedule, now, error)
        if error is None and failed_before:
            log.info("scheduled stream %s: VM %s started after %d failed tries", schedule.id, schedule.vm,
                     failed_before)
        elif error is not None and error != schedule.vm_start_error:
            log.warning("scheduled stream %s: VM %s did not start (trying again from %s): %s", schedule.id,
                        schedule.vm, f"{retry_at:%H:%M:%S} UTC", error)
        done.append(ScheduledStart(schedule.id, schedule.name, schedule.vm, schedule.starts_at, error, retry_at))
    return done


# -- policy replay (what-if) -------------------------------------------------------------------------------------

MAX_REPLAY = timedelta(days=92)


@dataclass(frozen=True)
class ReplayComparison:
    """The what-if policy next to the current one, over the same stored history (docs/autoshutdown.md)."""

    start: datetime
    end: datetime
    current: ReplayResult
    candidate: ReplayResult
    assumption: str = ("a replayed stop saves the time the VM really ran until the history shows it was needed "
                       "again; regret = a stream live or a GPU busy within 1 h after a replayed stop")

    def difference(self) -> dict[str, float]:
        """Candidate minus current, per total."""
        now, then = self.candidate.totals(), self.current.totals()
        return {k: round(now[k] - then[k], 3) for k in now}


def replay_policy(principal: Principal, since: timedelta, changes: PolicyChanges | None = None,
                  host: str | None = None, *, settings: Settings | None = None,
                  now: datetime | None = None) -> ReplayComparison:
    """Replay the current policy and the what-if (`changes` over it) on the evaluations of the last `since`."""
    settings = settings or get_settings()
    require_role(principal, Role.viewer, "replay the auto-shutdown policy")
    if not timedelta(0) < since <= MAX_REPLAY:
        raise InvalidInput(f"replay range must be between 1 s and {MAX_REPLAY.days} days")
    current = build_policy(settings)
    candidate = (changes or PolicyChanges()).apply(current)
    end = now or datetime.now(UTC)
    start = end - since
    with query_connection(settings) as conn:
        hosts = replay_hosts(conn, start, end, host)
        if host is not None and not hosts:
            raise NotFound(f"no auto-shutdown evaluations of {host} since {start:%Y-%m-%d %H:%M} UTC")
        runs: dict[str, tuple[int, list[ReplayStop], list[ReplayStop]]] = {}
        for name in hosts:
            history = load_history(conn, name, start, end)
            runs[name] = (history.n, replay_history(current, history), replay_history(candidate, history))
        return ReplayComparison(start, end, _priced(conn, current, runs, 1), _priced(conn, candidate, runs, 2))


def _priced(conn: psycopg.Connection, replayed: Policy, runs: dict[str, tuple[int, list[ReplayStop], list[ReplayStop]]],
            which: int) -> ReplayResult:
    """Price one policy's replayed stops like the savings ledger prices real ones (`costs.savings.HostRates`)."""
    rates, hosts = HostRates(conn), []
    for host, run in runs.items():
        stops = run[which]
        priced = [rates.price(host, s.at, s.until) for s in stops]
        hosts.append(HostReplay(host, run[0], stops, sum(s.hours for s in stops), sum(p.usd for p in priced),
                                sum(p.unpriced_gpu_hours for p in priced)))
    return ReplayResult(describe(replayed), hosts)
