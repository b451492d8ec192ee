"""Stored risk predictions (`gpu_risk`): the latest probability per GPU with its top contributing features."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class Contribution:
    """How much the probability drops when this feature is set to a typical healthy value."""

    feature: str
    value: float
    typical: float
    delta: float


@dataclass(frozen=True)
class RiskPrediction:
    gpu_uuid: str
    host: str
    gpu_index: int
    model: str | None
    predicted_at: datetime
    horizon_h: int
    probability: float
    baseline_score: float
    model_version: str
    top_features: list[Contribution]
    features: dict[str, float]


def save_predictions(conn: psycopg.Connection, predictions: list[RiskPrediction]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO gpu_risk (gpu_uuid, host, gpu_index, model, predicted_at, horizon_h, probability,
                                     baseline_score, model_version, top_features, features)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (gpu_uuid) DO UPDATE SET host = EXCLUDED.host, gpu_index = EXCLUDED.gpu_index,
                   model = EXCLUDED.model, predicted_at = EXCLUDED.predicted_at, horizon_h = EXCLUDED.horizon_h,
                   probability = EXCLUDED.probability, baseline_score = EXCLUDED.baseline_score,
                   model_version = EXCLUDED.model_version, top_features = EXCLUDED.top_features,
                   features = EXCLUDED.features""",
            [
                (p.gpu_uuid, p.host, p.gpu_index, p.model, p.predicted_at, p.horizon_h, p.probability,
                 p.baseline_score, p.model_version, Jsonb([c.__dict__ for c in p.top_features]), Jsonb(p.features))
                for p in predictions
            ],
        )


def _prediction(row: dict[str, Any]) -> RiskPrediction:
    return RiskPrediction(**(row | {"top_features": [Contribution(**c) for c in row["top_features"]]}))


_COLUMNS = ("gpu_uuid, host, gpu_index, model, predicted_at, horizon_h, probability, baseline_score, model_version, "
            "top_features, features")


def get_risk(conn: psycopg.Connection, gpu_uuid: str) -> RiskPrediction | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM gpu_risk WHERE gpu_uuid = %s", (gpu_uuid,)).fetchone()
    return _prediction(row) if row else None


def list_risk(conn: psycopg.Connection, *, min_probability: float = 0.0, limit: int = 100) -> list[RiskPrediction]:
    """Riskiest first."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM gpu_risk WHERE probability >= %s ORDER BY probability DESC, gpu_uuid LIMIT %s",
        (min_probability, limit),
    ).fetchall()
    return [_prediction(r) for r in rows]
