"""The alert lifecycle as a pure function: every transition and its reason, without a database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from backend.health.findings import Finding
from backend.health.transitions import AlertPolicy, transition

NOW = datetime(2026, 11, 10, 12, tzinfo=UTC)
POLICY = AlertPolicy(resolve_after_evaluations=3, resolve_hold_s=60, reopen_window_s=3600)


@dataclass(frozen=True)
class Facts:
    state: str = "open"
    severity: str = "warning"
    last_firing_at: datetime = NOW - timedelta(minutes=5)
    clear_count: int = 0
    resolved_at: datetime | None = None


def hot(severity: str = "warning") -> Finding:
    return Finding("gpu_temperature", severity, "GPU temperature high", {"gpu_temp": 88}, NOW, "check cooling")


def test_a_new_condition_opens_an_alert() -> None:
    t = transition(None, hot(), NOW, POLICY)
    assert (t.change, t.state, t.event, t.reason) == ("open", "open", "opened", "warning: GPU temperature high")


def test_a_firing_alert_is_updated_without_an_event_and_keeps_its_acknowledgement() -> None:
    t = transition(Facts(state="acknowledged", clear_count=2), hot(), NOW, POLICY)
    assert (t.change, t.state, t.event, t.clear_count) == ("fire", "acknowledged", None, 0)


def test_higher_severity_escalates_and_reopens_an_acknowledged_alert() -> None:
    t = transition(Facts(state="acknowledged"), hot("critical"), NOW, POLICY)
    assert (t.change, t.state, t.event) == ("fire", "open", "escalated")
    assert t.reason == "severity rose from warning to critical"


def test_clear_is_held_until_enough_evaluations_and_time() -> None:
    one = transition(Facts(), None, NOW, POLICY)
    assert (one.change, one.state, one.event, one.clear_count) == ("clear", "open", None, 1)
    assert "flap suppression" in one.reason
    recent = Facts(clear_count=2, last_firing_at=NOW - timedelta(seconds=30))
    held = transition(recent, None, NOW, POLICY)
    assert (held.state, held.event, held.clear_count) == ("open", None, 3)
    done = transition(Facts(clear_count=2), None, NOW, POLICY)
    assert (done.change, done.state, done.event) == ("clear", "resolved", "resolved")
    assert done.reason == "clear for 3 evaluations and 300 s since it last fired"


def test_stale_telemetry_is_not_clear() -> None:
    t = transition(Facts(clear_count=2), None, NOW, POLICY, stale=True)
    assert (t.change, t.state, t.event) == ("none", "open", None)
    assert "stale" in t.reason


def test_a_condition_returning_within_the_window_reopens_after_it_a_new_alert_opens() -> None:
    resolved = Facts(state="resolved", resolved_at=NOW - timedelta(minutes=10))
    t = transition(resolved, hot(), NOW, POLICY)
    assert (t.change, t.state, t.event) == ("reopen", "open", "reopened")
    assert t.reason == "condition returned 600 s after it resolved, within the 3600 s reopen window"
    old = Facts(state="resolved", resolved_at=NOW - timedelta(hours=2))
    assert transition(old, hot(), NOW, POLICY).change == "open"


def test_nothing_happens_for_a_clear_rule_without_an_active_alert() -> None:
    assert transition(None, None, NOW, POLICY).change == "none"
    resolved = Facts(state="resolved", resolved_at=NOW - timedelta(minutes=1))
    assert transition(resolved, None, NOW, POLICY).change == "none"
