"""One GPU's assessment: run every rule over its history, mark stale telemetry, and derive the status."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from backend.config import Settings
from backend.health.findings import Finding, GpuHealth, status_of
from backend.health.history import GpuHistory
from backend.health.limits import ModelLimits, catalog, limits_for
from backend.health.rules import RuleContext, run_rules


@dataclass(frozen=True)
class HealthPolicy:
    """The knobs of an evaluation, read from settings once per run."""

    window_s: float = 600.0
    xid_window_s: float = 3600.0
    stale_after_s: float = 120.0
    limits: dict[str, ModelLimits] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> HealthPolicy:
        return cls(settings.health_window_s, settings.health_xid_window_s, settings.health_stale_after_s,
                   catalog(settings.health_model_limits))

    @property
    def load_window(self) -> timedelta:
        """How far back the rules need every column: their window plus room for the baseline sample before it."""
        return timedelta(seconds=self.window_s + self.stale_after_s)

    @property
    def xid_load_window(self) -> timedelta:
        return timedelta(seconds=self.xid_window_s + self.stale_after_s)

    def context(self, model: str | None, now: datetime) -> RuleContext:
        return RuleContext(now=now, limits=limits_for(model, self.limits or catalog()), window_s=self.window_s,
                           xid_window_s=self.xid_window_s)


def stale_finding(history: GpuHistory, now: datetime, policy: HealthPolicy) -> Finding | None:
    """No sample for longer than the staleness limit: we cannot vouch for this GPU."""
    last = history.last_sample_at
    if last is not None and (now - last).total_seconds() <= policy.stale_after_s:
        return None
    evidence = {"last_seen": last.isoformat() if last else None,
                "age_s": round((now - last).total_seconds()) if last else None,
                "stale_after_s": policy.stale_after_s}
    since = last + timedelta(seconds=policy.stale_after_s) if last else now
    return Finding("telemetry_stale", "warning", "No recent telemetry", evidence, since,
                   "Check the collector (dcgm-exporter / agent) and the host; a GPU that fell off the bus also "
                   "stops reporting")


def assess(history: GpuHistory, now: datetime, policy: HealthPolicy) -> GpuHealth:
    """Status and findings for one GPU at `now`."""
    findings = run_rules(history, policy.context(history.model, now))
    stale = stale_finding(history, now, policy)
    if stale:
        findings.append(stale)
    return GpuHealth(history.gpu_uuid, history.host, history.gpu_index, history.model,
                     status_of(findings, stale=stale is not None), findings, history.last_sample_at, now)
