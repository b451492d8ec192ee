"""Alert lifecycle on a real PostgreSQL: open, dedup, flap suppression, resolve, reopen, escalate, acknowledge."""

from __future__ import annotations

from datetime import timedelta

import pytest

from backend import audit
from backend.errors import Conflict, NotFound
from backend.health import evaluator, service
from backend.health.alerts import AlertPolicy, reconcile
from backend.health.findings import Finding, GpuHealth
from backend.identity import SYSTEM, PermissionDenied, Principal, Role

from .crafted import NOW, rows, store

POLICY = AlertPolicy(resolve_after_evaluations=3, resolve_hold_s=60, reopen_window_s=3600)
STEP = timedelta(seconds=30)


def health(*findings: Finding, status: str | None = None, uuid: str = "GPU-1") -> GpuHealth:
    worst = "critical" if any(f.severity == "critical" for f in findings) else "warning" if findings else "healthy"
    return GpuHealth(uuid, "node-a", 0, "NVIDIA H100 80GB HBM3", status or worst, list(findings))


def hot(value: float = 88.0, severity: str = "warning") -> Finding:
    return Finding("gpu_temperature", severity, "GPU temperature high", {"gpu_temp": value}, NOW, "check cooling")


def run(db, *results: GpuHealth, at=NOW):
    return [(e.kind, e.alert) for e in reconcile(db, list(results), at, POLICY)]


def test_open_then_dedup_with_updated_evidence(db):
    [(kind, opened)] = run(db, health(hot(88)))
    assert (kind, opened.state, opened.severity, opened.rule) == ("opened", "open", "warning", "gpu_temperature")
    assert run(db, health(hot(89)), at=NOW + STEP) == []
    [alert] = service.list_alerts(SYSTEM)
    assert alert.id == opened.id
    assert alert.evidence == {"gpu_temp": 89}
    assert alert.last_firing_at == NOW + STEP


def test_flapping_condition_does_not_resolve_until_clear_for_n_evaluations_and_hold(db):
    [(_, alert)] = run(db, health(hot()))
    assert run(db, health(), at=NOW + STEP) == []       # clear 1
    assert run(db, health(hot()), at=NOW + 2 * STEP) == []  # back: clear count resets, no new alert
    assert run(db, health(), at=NOW + 3 * STEP) == []   # clear 1
    assert run(db, health(), at=NOW + 4 * STEP) == []   # clear 2
    [(kind, resolved)] = run(db, health(), at=NOW + 5 * STEP)  # clear 3, 90 s since it last fired
    assert (kind, resolved.id, resolved.state, resolved.resolved_at) == ("resolved", alert.id, "resolved",
                                                                       NOW + 5 * STEP)
    assert len(service.list_alerts(SYSTEM)) == 1


def test_hold_time_delays_resolution(db):
    policy = AlertPolicy(resolve_after_evaluations=1, resolve_hold_s=300, reopen_window_s=0)
    reconcile(db, [health(hot())], NOW, policy)
    assert reconcile(db, [health()], NOW + STEP, policy) == []
    assert [e.kind for e in reconcile(db, [health()], NOW + timedelta(minutes=5), policy)] == ["resolved"]


def test_condition_returning_soon_after_resolution_reopens_the_same_alert(db):
    [(_, first)] = run(db, health(hot()))
    for i in range(1, 4):
        run(db, health(), at=NOW + i * STEP)
    [(kind, again)] = run(db, health(hot()), at=NOW + timedelta(minutes=10))
    assert (kind, again.id, again.state, again.reopen_count, again.resolved_at) == ("reopened", first.id, "open", 1,
                                                                                 None)
    # long after the reopen window it is a new alert
    for i in range(1, 4):
        run(db, health(), at=NOW + timedelta(minutes=10) + i * STEP)
    [(kind, fresh)] = run(db, health(hot()), at=NOW + timedelta(hours=3))
    assert kind == "opened" and fresh.id != first.id


def test_escalation_reopens_an_acknowledged_alert(db):
    [(_, alert)] = run(db, health(hot()))
    service.acknowledge(Principal("olga", Role.operator), alert.id)
    assert run(db, health(hot()), at=NOW + STEP) == []
    [(kind, escalated)] = run(db, health(hot(91, "critical")), at=NOW + 2 * STEP)
    assert (kind, escalated.state, escalated.severity) == ("escalated", "open", "critical")


def test_stale_gpu_keeps_its_alerts(db):
    run(db, health(hot()))
    for i in range(1, 6):
        assert run(db, health(status="unknown"), at=NOW + i * STEP) == []
    [alert] = service.list_alerts(SYSTEM)
    assert (alert.state, alert.clear_count) == ("open", 0)


def test_alerts_of_several_gpus_and_rules_are_separate(db):
    dbe = Finding("ecc_dbe_volatile", "critical", "DBE", {"ecc_dbe_vol_total": 1}, NOW, "reset")
    events = run(db, health(hot(), dbe), health(hot(), uuid="GPU-2"))
    assert sorted((a.gpu_uuid, a.rule) for _, a in events) == [
        ("GPU-1", "ecc_dbe_volatile"), ("GPU-1", "gpu_temperature"), ("GPU-2", "gpu_temperature")]
    assert [a.rule for a in service.list_alerts(SYSTEM, severity="critical")] == ["ecc_dbe_volatile"]
    assert len(service.list_alerts(SYSTEM, gpu_uuid="GPU-2")) == 1
    assert service.list_alerts(SYSTEM, states=("resolved",)) == []


def test_acknowledge_is_audited_and_needs_operator(db):
    [(_, alert)] = run(db, health(hot()))
    with pytest.raises(PermissionDenied, match="needs role operator"):
        service.acknowledge(Principal("vic", Role.viewer), alert.id)
    acked = service.acknowledge(Principal("olga", Role.operator), alert.id, note="on it")
    assert (acked.state, acked.acknowledged_by, acked.ack_note) == ("acknowledged", "olga", "on it")
    assert service.acknowledge(SYSTEM, alert.id).acknowledged_by == "olga"  # idempotent

    trail = [(e.actor, e.action, e.outcome, e.target) for e in audit.entries(db, area="health")]
    assert trail == [("olga", "alert.ack", "ok", f"alert:{alert.id}"), ("vic", "alert.ack", "denied",
                                                                       f"alert:{alert.id}")]
    with pytest.raises(NotFound):
        service.acknowledge(SYSTEM, 999_999)


def test_resolved_alert_cannot_be_acknowledged(db):
    [(_, alert)] = run(db, health(hot()))
    for i in range(1, 4):
        run(db, health(), at=NOW + i * STEP)
    with pytest.raises(Conflict, match="already resolved"):
        service.acknowledge(SYSTEM, alert.id)


def test_end_to_end_from_telemetry(settings, db):
    store(db, "GPU-x", rows(60, xid_errors=[0] * 50 + [79] * 10))
    first = evaluator.evaluate_once(settings, now=NOW)
    assert first.opened == 1
    [alert] = service.list_alerts(SYSTEM, states=("open",))
    assert (alert.rule, alert.severity, alert.evidence["xid"]) == ("xid_79", "critical", 79)
    assert "fallen off the bus" in alert.title
