"""Train the risk model on simulated fleets and evaluate it, next to the rule baseline, on held-out seeds."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

from backend.errors import InvalidInput
from backend.health.risk import model as risk_model
from backend.health.risk.dataset import FleetSpec, build
from backend.health.risk.model import RiskModel, Scores


@dataclass(frozen=True)
class TrainReport:
    version: str
    path: Path | None
    horizon_h: float
    train_seeds: list[int]
    test_seeds: list[int]
    train_rows: int
    threshold: float
    model: Scores
    baseline: Scores
    model_started: Scores
    baseline_started: Scores
    seconds: float


def train_and_evaluate(
    *,
    train_seeds: list[int],
    test_seeds: list[int],
    horizon_h: float,
    spec: FleetSpec | None = None,
    out_dir: Path | None = None,
    advance: Callable[[int], None] | None = None,
) -> tuple[RiskModel, TrainReport]:
    """Fit on `train_seeds`, score on `test_seeds` (never seen in training), save to `out_dir` if given."""
    if not train_seeds or not test_seeds or set(train_seeds) & set(test_seeds):
        raise InvalidInput("train and test seeds must both be given and must not overlap")
    if horizon_h <= 0:
        raise InvalidInput("the horizon must be a positive number of hours")
    spec = spec or FleetSpec()
    started = time.perf_counter()
    horizon = timedelta(hours=horizon_h)
    train = build(train_seeds, spec, horizon, advance)
    test = build(test_seeds, spec, horizon, advance)
    if not train.positives:
        raise InvalidInput("the training fleets produced no positive examples: use more seeds or a larger fleet")
    model = risk_model.fit(train, horizon_h=horizon_h, lookback_h=spec.lookback.total_seconds() / 3600)
    probabilities = model.probabilities(test.features)
    model_scores = risk_model.score(test.labels, probabilities, model.threshold)
    baseline_scores = risk_model.score(test.labels, test.baseline, 1.0)
    # leaving out positives whose fault had not begun yet: nothing in the telemetry can foretell those
    seen = (test.labels == 0) | test.started
    model_started = risk_model.score(test.labels[seen], probabilities[seen], model.threshold)
    baseline_started = risk_model.score(test.labels[seen], test.baseline[seen], 1.0)
    path = risk_model.next_path(out_dir) if out_dir is not None else None
    version = path.stem if path else "unsaved"
    report = TrainReport(version, path, horizon_h, train_seeds, test_seeds, len(train.labels), model.threshold,
                         model_scores, baseline_scores, model_started, baseline_started,
                         round(time.perf_counter() - started, 1))
    model.report = asdict(report) | {"path": str(path) if path else None}
    if path is not None:
        risk_model.save(model, path)
    return model, report
