"""Failure risk: features on crafted histories, a model trained on small simulated fleets that beats the rule
baseline on held-out seeds, versioned model files, and predictions stored per GPU on a real PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from threadpoolctl import threadpool_limits

from backend.errors import InvalidInput, NotFound
from backend.health import evaluator, service
from backend.health.risk import model as risk_model
from backend.health.risk.features import FEATURES, extract
from backend.health.risk.predict import predict_fleet
from backend.health.risk.training import FleetSpec, train_and_evaluate
from backend.identity import SYSTEM

from .crafted import NOW, history, rows, store

SMALL = FleetSpec(hosts=3, gpus_per_host=8, hours=18, fault_share=0.6, interval_s=120, snapshot_every_h=0.5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One small training run shared by the tests below (a few seconds)."""
    out = tmp_path_factory.mktemp("models")
    with threadpool_limits(1):
        model, report = train_and_evaluate(train_seeds=[3, 4], test_seeds=[103, 104], horizon_h=6, spec=SMALL,
                                           out_dir=out)
    return model, report, out


def test_features_from_a_crafted_history():
    samples = rows(
        361, step_s=30,  # three hours
        gpu_temp=[60 + i * (12 / 120) for i in range(361)],  # +12 °C per hour
        ecc_sbe_vol_total=[i // 60 for i in range(361)],  # one SBE every 30 minutes
        thermal_violation=[0] * 241 + [i * 30_000_000 for i in range(120)],  # throttled all of the last hour
        xid_errors=[0] * 300 + [79] * 30 + [0] * 10 + [13] * 21,
    )
    f = extract(history(samples).samples, NOW, timedelta(hours=3))
    assert set(f) == set(FEATURES)
    assert f["temp_slope_c_per_h"] == pytest.approx(12.0, rel=1e-6)
    assert f["temp_max"] == pytest.approx(96.0)
    assert f["sbe_per_h"] == pytest.approx(2.0)
    assert f["sbe_last_hour"] == pytest.approx(2.0)
    assert f["thermal_throttle_share"] == pytest.approx(1 / 3, rel=0.01)
    assert (f["xid_events"], f["xid_critical_events"]) == (2.0, 1.0)


def test_model_beats_the_rule_baseline_on_held_out_seeds(trained):
    _, report, _ = trained
    assert report.model.positives > 50 and report.model.rows > 1000
    assert report.model.pr_auc > report.baseline.pr_auc + 0.1
    assert report.model.recall > report.baseline.recall
    assert report.train_seeds == [3, 4] and report.test_seeds == [103, 104]


def test_model_files_are_versioned(trained, tmp_path):
    model, report, out = trained
    assert report.path == out / "risk-v1.joblib" and report.version == "risk-v1"
    again = risk_model.save(model, risk_model.next_path(out))
    assert again.name == "risk-v2.joblib"
    assert risk_model.load_latest(out).version == "risk-v2"
    assert risk_model.load_latest(out).report["model"]["pr_auc"] == report.model.pr_auc
    with pytest.raises(NotFound, match="health train"):
        risk_model.load_latest(tmp_path / "empty")


def test_training_refuses_overlapping_seeds():
    with pytest.raises(InvalidInput, match="must not overlap"):
        train_and_evaluate(train_seeds=[1, 2], test_seeds=[2], horizon_h=6, spec=SMALL)


def test_predictions_stored_with_top_features(settings, db, trained):
    _, _, out = trained
    climbing = [70 + i * (20 / 120) for i in range(121)]  # a cooling failure: +20 °C in the last hour
    store(db, "GPU-hot", rows(121, step_s=30, gpu_temp=climbing, memory_temp=[t + 6 for t in climbing]), index=0)
    store(db, "GPU-calm", rows(121, step_s=30), index=1)

    predictions = predict_fleet(settings, now=NOW, model_dir=out)
    assert [p.gpu_uuid for p in predictions] == ["GPU-hot", "GPU-calm"]
    hot, calm = predictions
    assert hot.probability > calm.probability
    assert hot.model_version == risk_model.load_latest(out).version
    assert hot.top_features and hot.top_features[0].delta > 0
    assert any(c.feature.startswith(("temp", "memory_temp")) for c in hot.top_features)

    stored = service.fleet_risk(SYSTEM)
    assert [p.gpu_uuid for p in stored] == ["GPU-hot", "GPU-calm"]
    assert stored[0].top_features == hot.top_features
    assert stored[0].features["temp_max"] == pytest.approx(90.0)


def test_evaluation_loop_refreshes_predictions(settings, db, trained, monkeypatch):
    _, _, out = trained
    monkeypatch.setenv("HEALTH_MODEL_DIR", str(out))
    from backend.config import get_settings

    get_settings.cache_clear()
    store(db, "GPU-live", rows(60, end=datetime.now(UTC).replace(microsecond=0)))
    stop, summaries = threading.Event(), []

    def on_summary(summary):
        summaries.append(summary)
        if len(summaries) == 2:
            stop.set()

    loop = threading.Thread(target=evaluator.evaluate_loop, kwargs={"every_s": 0.05, "stop": stop,
                                                                   "on_summary": on_summary})
    loop.start()
    loop.join(60)
    assert not loop.is_alive() and len(summaries) == 2
    assert [p.gpu_uuid for p in service.fleet_risk(SYSTEM)] == ["GPU-live"]
    assert service.gpu_detail(SYSTEM, "GPU-live").risk.model_version == risk_model.load_latest(out).version
