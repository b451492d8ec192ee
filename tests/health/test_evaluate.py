"""Fleet evaluation on a real PostgreSQL: the loader, stored statuses, and the read services."""

from __future__ import annotations

from datetime import timedelta

import pytest

from backend.errors import InvalidInput, NotFound
from backend.health import evaluator, service
from backend.health.evaluate import HealthPolicy, assess
from backend.health.store import load_fleet
from backend.identity import SYSTEM

from .crafted import A100, NOW, rows, store


@pytest.fixture
def fleet(db):
    store(db, "GPU-ok", rows(90), host="node-a", index=0)
    store(db, "GPU-dbe", rows(90, ecc_dbe_vol_total=[0] * 80 + [2] * 10), host="node-a", index=1)
    store(db, "GPU-hot", rows(90, gpu_temp=86.0), host="node-b", index=0, model=A100)
    store(db, "GPU-gone", rows(30, end=NOW - timedelta(minutes=5)), host="node-b", index=1)
    return db


def test_loader_reads_the_whole_fleet_in_one_pass(fleet):
    histories = {h.gpu_uuid: h for h in load_fleet(fleet, NOW, timedelta(minutes=20))}
    assert set(histories) == {"GPU-ok", "GPU-dbe", "GPU-hot", "GPU-gone"}
    assert len(histories["GPU-ok"].samples) == 90
    assert histories["GPU-hot"].model == A100
    assert histories["GPU-dbe"].latest("ecc_dbe_vol_total") == (NOW, 2.0)
    # only the window is loaded
    assert len(load_fleet(fleet, NOW, timedelta(minutes=1))[0].samples) <= 7


def test_loader_thins_the_xid_window_to_changes(db):
    xid = [0] * 100 + [79] * 100 + [0] * 50 + [31] * 110  # 360 samples: one hour at 10 s
    store(db, "GPU-x", rows(360, xid_errors=xid))
    [thin] = load_fleet(db, NOW, timedelta(minutes=10), timedelta(hours=1, minutes=2))
    [full] = load_fleet(db, NOW, timedelta(hours=1, minutes=2))
    assert len(full.samples) == 360
    assert len(thin.samples) == 60 + 4  # the last ten minutes in full; before that the first row and three changes
    assert [v for _, v in thin.series("xid_errors")][:4] == [0, 79, 0, 31]
    assert thin.series("gpu_temp")[0][0] == NOW - timedelta(minutes=10) + timedelta(seconds=10)
    policy = HealthPolicy(window_s=600, xid_window_s=3600)
    assert assess(thin, NOW, policy).findings == assess(full, NOW, policy).findings


def test_evaluate_once_stores_status_and_findings(settings, fleet):
    summary = evaluator.evaluate_once(settings, now=NOW)
    assert (summary.gpus, summary.healthy, summary.warning, summary.critical, summary.unknown) == (4, 1, 1, 1, 1)
    assert summary.opened == 3  # DBE, A100 over 85 °C, stale telemetry

    statuses = {h.gpu_uuid: h for h in service.fleet_health(SYSTEM)}
    assert statuses["GPU-dbe"].status == "critical"
    dbe = statuses["GPU-dbe"].findings[0]
    assert (dbe.rule, dbe.evidence["ecc_dbe_vol_total"]) == ("ecc_dbe_volatile", 2)
    assert dbe.since == NOW - timedelta(seconds=90)
    assert statuses["GPU-hot"].findings[0].rule == "gpu_temperature"
    assert statuses["GPU-gone"].status == "unknown"
    assert statuses["GPU-ok"].status == "healthy" and statuses["GPU-ok"].findings == []
    # worst first
    assert service.fleet_health(SYSTEM)[0].status == "critical"


def test_filters_and_detail(settings, fleet):
    evaluator.evaluate_once(settings, now=NOW)
    assert [h.gpu_uuid for h in service.fleet_health(SYSTEM, status="critical")] == ["GPU-dbe"]
    assert {h.gpu_uuid for h in service.fleet_health(SYSTEM, host="node-b")} == {"GPU-hot", "GPU-gone"}
    assert [h.gpu_uuid for h in service.fleet_health(SYSTEM, model="a100")] == ["GPU-hot"]
    with pytest.raises(InvalidInput, match="status must be one of"):
        service.fleet_health(SYSTEM, status="sick")

    detail = service.gpu_detail(SYSTEM, "GPU-dbe")
    assert detail.health.status == "critical"
    assert [a.rule for a in detail.alerts] == ["ecc_dbe_volatile"]
    assert detail.risk is None
    with pytest.raises(NotFound):
        service.gpu_detail(SYSTEM, "GPU-nope")


def test_status_since_moves_only_when_the_status_changes(settings, fleet):
    evaluator.evaluate_once(settings, now=NOW)
    evaluator.evaluate_once(settings, now=NOW + timedelta(seconds=30))
    row = fleet.execute("SELECT status, status_since, evaluated_at FROM gpu_health WHERE gpu_uuid='GPU-ok'").fetchone()
    assert row["status_since"] == NOW
    assert row["evaluated_at"] == NOW + timedelta(seconds=30)
    # 30 s later GPU-ok's last sample is 30 s old: still fresh; at +3 min it is stale
    evaluator.evaluate_once(settings, now=NOW + timedelta(minutes=3))
    row = fleet.execute("SELECT status, status_since FROM gpu_health WHERE gpu_uuid='GPU-ok'").fetchone()
    assert (row["status"], row["status_since"]) == ("unknown", NOW + timedelta(minutes=3))


def test_week_old_sample_feeds_the_dbe_growth_rule(settings, db):
    store(db, "GPU-pages", rows(3, end=NOW - timedelta(days=6), retired_pages_dbe=10), host="node-c")
    store(db, "GPU-pages", rows(30, retired_pages_dbe=16), host="node-c")
    evaluator.evaluate_once(settings, now=NOW)
    found = {f.rule: f for f in service.gpu_detail(SYSTEM, "GPU-pages").health.findings}
    assert found["retired_pages_dbe_growth"].evidence["added_in_week"] == 6


def test_a_lasting_finding_keeps_when_it_began(settings, db):
    store(db, "GPU-dbe", rows(60, ecc_dbe_vol_total=1))
    evaluator.evaluate_once(settings, now=NOW)
    first = service.gpu_detail(SYSTEM, "GPU-dbe").health.findings[0]
    assert first.since == NOW - timedelta(seconds=590)
    # an hour later the first samples are long out of the loaded window; the finding still began back then
    store(db, "GPU-dbe", rows(360, end=NOW + timedelta(hours=1), ecc_dbe_vol_total=1))
    evaluator.evaluate_once(settings, now=NOW + timedelta(hours=1))
    assert service.gpu_detail(SYSTEM, "GPU-dbe").health.findings[0].since == first.since
