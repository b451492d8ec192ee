"""What the rules say about a GPU: findings with evidence, and the status they add up to."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Severity = Literal["warning", "critical"]
Status = Literal["healthy", "warning", "critical", "unknown"]
STATUSES: tuple[Status, ...] = ("healthy", "warning", "critical", "unknown")
SEVERITY_RANK: dict[str, int] = {"warning": 1, "critical": 2}


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    title: str
    evidence: dict[str, Any]
    since: datetime
    action: str


@dataclass
class GpuHealth:
    gpu_uuid: str
    host: str
    gpu_index: int
    model: str | None
    status: Status
    findings: list[Finding] = field(default_factory=list)
    last_seen: datetime | None = None
    evaluated_at: datetime | None = None
    status_since: datetime | None = None


def status_of(findings: list[Finding], *, stale: bool) -> Status:
    """Stale data means we cannot vouch for the GPU (unknown); otherwise the worst finding decides."""
    if stale:
        return "unknown"
    worst = max((SEVERITY_RANK[f.severity] for f in findings), default=0)
    return ("healthy", "warning", "critical")[worst]
