"""The failure-risk model: gradient boosting over `FEATURES`, saved as a versioned joblib file.

A model file holds the estimator and everything needed to use it honestly: feature names, horizon, lookback,
the decision threshold and the "typical healthy" feature values that explanations compare against.
Model files are only ever loaded from the configured model directory (joblib is pickle: never load strangers').
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np

from backend.errors import NotFound
from backend.health.risk.features import FEATURES
from backend.health.risk.store import Contribution

if TYPE_CHECKING:  # scikit-learn costs ~1 s to import: only training and scoring load it, not every CLI start
    from sklearn.ensemble import HistGradientBoostingClassifier

_FILE = re.compile(r"risk-v(\d+)\.joblib")

@dataclass
class Dataset:
    """Feature rows with their labels, the rule baseline's scores, and the seeds they came from."""

    features: np.ndarray
    labels: np.ndarray
    baseline: np.ndarray
    started: np.ndarray  # a fault had already begun on the GPU at the snapshot (so some signal can exist)
    seeds: list[int] = field(default_factory=list)

    @classmethod
    def concat(cls, parts: list[Dataset]) -> Dataset:
        return cls(np.vstack([p.features for p in parts]), np.concatenate([p.labels for p in parts]),
                   np.concatenate([p.baseline for p in parts]), np.concatenate([p.started for p in parts]),
                   [s for p in parts for s in p.seeds])

    @property
    def positives(self) -> int:
        return int(self.labels.sum())



@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    pr_auc: float
    positives: int
    rows: int


@dataclass
class RiskModel:
    estimator: HistGradientBoostingClassifier
    horizon_h: float
    lookback_h: float
    threshold: float
    typical: dict[str, float]
    features: tuple[str, ...] = FEATURES
    version: str = "unsaved"
    trained_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    report: dict[str, Any] = field(default_factory=dict)

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        return self.estimator.predict_proba(rows)[:, 1]

    def contributions(self, row: np.ndarray, top: int = 3) -> list[Contribution]:
        """Per-feature deltas: how far the probability falls when one feature is set to its typical healthy value."""
        typical = np.array([self.typical[name] for name in self.features])
        variants = np.repeat(row[None, :], len(self.features), axis=0)
        np.fill_diagonal(variants, typical)
        base = self.probabilities(row[None, :])[0]
        deltas = base - self.probabilities(variants)
        order = [i for i in np.argsort(-deltas) if deltas[i] > 1e-3][:top]
        return [Contribution(self.features[i], float(row[i]), float(typical[i]), round(float(deltas[i]), 4))
                for i in order]


def fit(data: Dataset, *, horizon_h: float, lookback_h: float, seed: int = 0) -> RiskModel:
    """Train on `data`; the threshold maximises F1 on the training rows (never on the held-out ones)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    estimator = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.08, max_leaf_nodes=15,
                                               l2_regularization=1.0, class_weight="balanced", random_state=seed)
    estimator.fit(data.features, data.labels)
    healthy = data.features[data.labels == 0] if (data.labels == 0).any() else data.features
    typical = dict(zip(FEATURES, np.median(healthy, axis=0).tolist(), strict=True))
    model = RiskModel(estimator, horizon_h, lookback_h, 0.5, typical)
    model.threshold = round(_best_threshold(data.labels, model.probabilities(data.features)), 3)
    return model


def _best_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    best, best_f1 = 0.5, -1.0
    for threshold in np.linspace(0.05, 0.95, 19):
        predicted = probabilities >= threshold
        tp = float((predicted & (labels == 1)).sum())
        f1 = 2 * tp / (predicted.sum() + labels.sum()) if predicted.sum() + labels.sum() else 0.0
        if f1 > best_f1:
            best, best_f1 = float(threshold), f1
    return best


def score(labels: np.ndarray, scores: np.ndarray, threshold: float) -> Scores:
    from sklearn.metrics import average_precision_score, precision_score, recall_score

    predicted = (scores >= threshold).astype(int)
    return Scores(
        precision=round(float(precision_score(labels, predicted, zero_division=0)), 3),
        recall=round(float(recall_score(labels, predicted, zero_division=0)), 3),
        pr_auc=round(float(average_precision_score(labels, scores)), 3) if labels.any() else 0.0,
        positives=int(labels.sum()),
        rows=len(labels),
    )


def versions(directory: Path) -> list[tuple[int, Path]]:
    if not directory.is_dir():
        return []
    found = [(int(m[1]), p) for p in directory.iterdir() if (m := _FILE.fullmatch(p.name))]
    return sorted(found)


def next_path(directory: Path) -> Path:
    """`risk-vN.joblib` with N one above the newest version in the directory."""
    found = versions(directory)
    return directory / f"risk-v{found[-1][0] + 1 if found else 1}.joblib"


def save(model: RiskModel, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    model.version = path.stem
    joblib.dump(model, path)
    return path


def load_latest(directory: Path) -> RiskModel:
    found = versions(directory)
    if not found:
        raise NotFound(f"no risk model in {directory}: run `stream-platform health train` first")
    model = joblib.load(found[-1][1])
    if not isinstance(model, RiskModel) or model.features != FEATURES:
        raise NotFound(f"{found[-1][1].name} was trained on other features: run `stream-platform health train`")
    return model
