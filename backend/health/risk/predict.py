"""Score the live fleet with the newest risk model and store each GPU's probability and its top drivers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from backend.config import Settings, get_settings
from backend.db import connect
from backend.health.evaluate import HealthPolicy
from backend.health.risk.baseline import baseline_score
from backend.health.risk.features import extract
from backend.health.risk.model import load_latest
from backend.health.risk.store import RiskPrediction, save_predictions
from backend.health.store import load_fleet


def predict_fleet(settings: Settings | None = None, *, now: datetime | None = None,
                  model_dir: Path | None = None) -> list[RiskPrediction]:
    """Predict for every GPU with data in the lookback; GPUs without any (stale) get no new prediction."""
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    model = load_latest(model_dir or settings.health_model_dir)
    policy = HealthPolicy.from_settings(settings)
    lookback = timedelta(hours=model.lookback_h)
    with connect(settings, autocommit=True, prepare_threshold=None) as conn:
        fleet = [h for h in load_fleet(conn, now, lookback + timedelta(minutes=5)) if h.samples]
        if not fleet:
            return []
        extracted = [extract(h.samples, now, lookback) for h in fleet]
        rows = np.array([[features[name] for name in model.features] for features in extracted])
        probabilities = model.probabilities(rows)
        predictions = [
            RiskPrediction(h.gpu_uuid, h.host, h.gpu_index, h.model, now, round(model.horizon_h),
                           round(float(p), 4), baseline_score(h, now, policy), model.version,
                           model.contributions(row), dict(zip(model.features, row.tolist(), strict=True)))
            for h, row, p in zip(fleet, rows, probabilities, strict=True)
        ]
        with conn.transaction():
            save_predictions(conn, predictions)
    return sorted(predictions, key=lambda p: -p.probability)
