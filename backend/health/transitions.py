"""The alert lifecycle as one pure function: what an evaluation does to one (GPU, rule) alert, and why.

`backend/health/alerts.py` only loads alerts and saves what `transition` decided, so every rule of the lifecycle
(open, dedup, escalate, flap hold, resolve, reopen, stale data) lives and is tested here without a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol

from backend.health.findings import SEVERITY_RANK, Finding

if TYPE_CHECKING:
    from backend.config import Settings

AlertState = Literal["open", "acknowledged", "resolved"]
EventKind = Literal["opened", "reopened", "escalated", "acknowledged", "resolved"]
Change = Literal["open", "reopen", "fire", "clear", "none"]


@dataclass(frozen=True)
class AlertPolicy:
    resolve_after_evaluations: int = 3
    resolve_hold_s: float = 120.0
    reopen_window_s: float = 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertPolicy:
        return cls(settings.health_resolve_after_evaluations, settings.health_resolve_hold_s,
                   settings.health_reopen_window_s)


class AlertFacts(Protocol):
    """What the lifecycle needs to know of an existing alert (a stored `Alert` has all of it)."""

    @property
    def state(self) -> AlertState: ...
    @property
    def severity(self) -> str: ...
    @property
    def last_firing_at(self) -> datetime: ...
    @property
    def clear_count(self) -> int: ...
    @property
    def resolved_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class Transition:
    change: Change
    """What to store: a new alert, a reopened one, a firing update, a clear count, or nothing."""
    state: AlertState | None
    """The alert's state afterwards (None: there is no alert)."""
    event: EventKind | None
    """What to tell people, if anything."""
    reason: str
    clear_count: int = 0


def transition(alert: AlertFacts | None, finding: Finding | None, now: datetime, policy: AlertPolicy, *,
               stale: bool = False) -> Transition:
    """Decide one alert's next state.

    `alert` is the active alert of this (GPU, rule), or else its most recently resolved one (which a finding may
    reopen); `finding` is this evaluation's finding for the rule, None when the rule is clear; `stale` says the
    GPU's telemetry is too old to tell, and no data is not the same as clear.
    """
    active = alert is not None and alert.state != "resolved"
    if finding is not None:
        if alert is not None and active:
            if SEVERITY_RANK[finding.severity] > SEVERITY_RANK[alert.severity]:
                return Transition("fire", "open", "escalated",
                                  f"severity rose from {alert.severity} to {finding.severity}")
            return Transition("fire", alert.state, None, "still firing: evidence updated, clear count reset")
        if alert is not None and alert.resolved_at is not None and \
                now - alert.resolved_at <= timedelta(seconds=policy.reopen_window_s):
            gap = (now - alert.resolved_at).total_seconds()
            return Transition("reopen", "open", "reopened",
                              f"condition returned {gap:.0f} s after it resolved, within the "
                              f"{policy.reopen_window_s:.0f} s reopen window")
        return Transition("open", "open", "opened", f"{finding.severity}: {finding.title}")
    if alert is None or not active:
        return Transition("none", alert.state if alert else None, None, "clear and no active alert")
    if stale:
        return Transition("none", alert.state, None, "telemetry is stale: the alert stays as it is")
    clears = alert.clear_count + 1
    held_s = (now - alert.last_firing_at).total_seconds()
    if clears >= policy.resolve_after_evaluations and held_s >= policy.resolve_hold_s:
        return Transition("clear", "resolved", "resolved",
                          f"clear for {clears} evaluations and {held_s:.0f} s since it last fired", clears)
    return Transition("clear", alert.state, None,
                      f"clear {clears}/{policy.resolve_after_evaluations} evaluations, {held_s:.0f}/"
                      f"{policy.resolve_hold_s:.0f} s held: not resolved yet (flap suppression)", clears)
