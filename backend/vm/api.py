"""REST for VMs, containers and the auto-shutdown agent: status for viewers; start/stop, restart, snooze and skip
for operators. Authorization and auditing live in `backend.vm.service`; this only maps HTTP onto it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from backend.api.auth import operator, viewer
from backend.config import Settings
from backend.identity.principal import Principal
from backend.parsing import parse_duration
from backend.vm import service
from backend.vm.compute import VmInstance
from backend.vm.containers import ContainerInfo
from backend.vm.replay import PolicyChanges, ReplayResult
from backend.vm.state import Evaluation

router = APIRouter(prefix="/api/v1", tags=["vm"])


def _settings(request: Request) -> Settings:
    return request.app.state.settings


class SnoozeRequest(BaseModel):
    minutes: float = Field(gt=0, le=service.MAX_SNOOZE_SECONDS / 60, description="hold the stop this much longer")
    host: str | None = Field(default=None, description="the agent's host (default: this API's host)")


class SkipRequest(BaseModel):
    host: str | None = None


def _status(status: service.AgentStatus) -> dict[str, Any]:
    return {
        "host": status.host, "state": status.state.to_json(), "seconds_left": status.seconds_left(),
        "latest": status.latest, "events": status.events,
    }


@router.get("/autoshutdown/status")
def autoshutdown_status(
    request: Request, host: str | None = None, principal: Principal = Depends(viewer)
) -> dict[str, Any]:
    """The countdown, the latest evaluation with per-signal reasons, and recent events."""
    return _status(service.agent_status(principal, host, settings=_settings(request)))


@router.get("/autoshutdown/history")
def autoshutdown_history(
    request: Request, host: str | None = None, limit: int = Query(100, ge=1, le=1000),
    principal: Principal = Depends(viewer),
) -> list[Evaluation]:
    return service.history(principal, host, limit, settings=_settings(request))


@router.post("/autoshutdown/snooze")
def autoshutdown_snooze(
    request: Request, body: SnoozeRequest, principal: Principal = Depends(operator)
) -> dict[str, Any]:
    service.snooze(principal, body.minutes * 60, body.host, settings=_settings(request))
    return _status(service.agent_status(principal, body.host, settings=_settings(request)))


@router.post("/autoshutdown/skip")
def autoshutdown_skip(request: Request, body: SkipRequest, principal: Principal = Depends(operator)) -> dict[str, Any]:
    service.skip(principal, body.host, settings=_settings(request))
    return _status(service.agent_status(principal, body.host, settings=_settings(request)))


@router.get("/autoshutdown/replay")
def autoshutdown_replay(
    request: Request, since: str = Query("30d", description="replay this last span, e.g. 30d"),
    threshold: str | None = Query(None, description="what-if idle threshold, e.g. 10m"),
    min_uptime: str | None = Query(None), warn: str | None = Query(None),
    never_stop: list[str] | None = Query(None, description="what-if never-stop windows"),
    host: str | None = None, principal: Principal = Depends(viewer),
) -> dict[str, Any]:
    """What-if: the current policy and the one given, replayed over the stored evaluations (docs/autoshutdown.md)."""
    changes = PolicyChanges(
        idle_seconds=_seconds(threshold, "threshold"), warn_seconds=_seconds(warn, "warn"),
        min_uptime_seconds=_seconds(min_uptime, "min_uptime"), never_stop=tuple(never_stop) if never_stop else None,
    )
    result = service.replay_policy(principal, parse_duration(since, what="since"), changes, host,
                                   settings=_settings(request))
    return {"start": result.start, "end": result.end, "assumption": result.assumption,
            "difference": result.difference(), "current": _replayed(result.current),
            "candidate": _replayed(result.candidate)}


def _seconds(text: str | None, what: str) -> float | None:
    return None if text is None else parse_duration(text, what=what, allow_zero=True).total_seconds()


def _replayed(run: ReplayResult) -> dict[str, Any]:
    return {"policy": run.policy, "totals": run.totals(),
            "hosts": [asdict(h) | {"regret": h.regret} for h in run.hosts]}


@router.get("/vms")
def vms(request: Request, principal: Principal = Depends(viewer)) -> list[VmInstance]:
    return service.list_vms(principal, settings=_settings(request))


@router.post("/vms/{name}/start")
def vm_start(request: Request, name: str, zone: str | None = None,
             principal: Principal = Depends(operator)) -> dict[str, str]:
    zone = service.start_vm(principal, name, zone, settings=_settings(request))
    return {"name": name, "zone": zone, "status": "started"}


@router.post("/vms/{name}/stop")
def vm_stop(request: Request, name: str, zone: str | None = None,
            principal: Principal = Depends(operator)) -> dict[str, str]:
    zone = service.stop_vm(principal, name, zone, settings=_settings(request))
    return {"name": name, "zone": zone, "status": "stopped"}


@router.get("/containers")
def containers(request: Request, principal: Principal = Depends(viewer)) -> list[ContainerInfo]:
    return service.list_containers(principal, settings=_settings(request))


@router.post("/containers/{name}/restart")
def container_restart(request: Request, name: str, principal: Principal = Depends(operator)) -> ContainerInfo:
    return service.restart_container(principal, name, settings=_settings(request))
