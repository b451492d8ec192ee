"""`stream-platform health …` end to end on a real database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from typer.testing import CliRunner

from backend.cli import app
from backend.identity import SYSTEM, Role, users

from .crafted import rows, store

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_evaluate_status_alerts_ack(settings, db):
    now = datetime.now(UTC)
    store(db, "GPU-cli", rows(30, end=now - timedelta(seconds=5), ecc_dbe_vol_total=3))
    result = _invoke("health", "evaluate", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["gpus"], summary["critical"], summary["opened"]) == (1, 1, 1)

    status = json.loads(_invoke("health", "status", "--json").output)
    assert status[0]["status"] == "critical" and status[0]["findings"][0]["rule"] == "ecc_dbe_volatile"
    shown = _invoke("health", "show", "GPU-cli")
    assert "ecc_dbe_volatile" in shown.output and "critical" in shown.output

    [alert] = json.loads(_invoke("health", "alerts", "--state", "open", "--json").output)
    users.add_user(db, SYSTEM, "vera", Role.viewer, "a long password 1")
    denied = _invoke("--as", "vera", "health", "ack", str(alert["id"]))
    assert denied.exit_code == 2 and "needs role operator" in denied.output
    acked = _invoke("health", "ack", str(alert["id"]), "--note", "replacing")
    assert acked.exit_code == 0 and "acknowledged by system" in acked.output
    timeline = json.loads(_invoke("health", "history", str(alert["id"]), "--json").output)
    assert [e["kind"] for e in timeline] == ["opened", "acknowledged"]


def test_bad_input_is_one_line(settings):
    bad = _invoke("health", "status", "--status", "sick")
    assert bad.exit_code == 2 and "status must be one of" in bad.output
    bad = _invoke("health", "alerts", "--state", "closed")
    assert bad.exit_code == 2 and "state must be one of" in bad.output


def test_predict_without_a_model_says_what_to_do(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("HEALTH_MODEL_DIR", str(tmp_path / "none"))
    from backend.config import get_settings

    get_settings.cache_clear()
    result = _invoke("health", "predict")
    assert result.exit_code == 2 and "stream-platform health train" in result.output


def test_train_writes_a_versioned_model(settings, tmp_path):
    result = _invoke("health", "train", "--train-seeds", "2", "--test-seeds", "1", "--hosts", "2", "--hours", "14",
                     "--horizon", "6", "--out", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["version"] == "risk-v1" and (tmp_path / "risk-v1.joblib").is_file()
    assert {"precision", "recall", "pr_auc"} <= set(report["model"]) and report["baseline"]["rows"] > 0
