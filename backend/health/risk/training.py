"""Training the risk model on simulated fleets: faults injected at seeded times, features at regular snapshots,
and the label "a critical fault begins on this GPU within the next H hours" from the simulator's fault schedule;
then fit, and evaluate next to the rule baseline on held-out seeds.

Only `stream-platform health train` imports this module: it is the one place where production code meets the
simulator. Snapshots of GPUs that have already failed are left out (there is nothing left to predict), as are
snapshots without a full lookback of data. Everything is computed in memory: no Kafka, no database.
"""

from __future__ import annotations

import bisect
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from backend.errors import InvalidInput
from backend.health.evaluate import HealthPolicy
from backend.health.history import GpuHistory, Sample
from backend.health.risk import model as risk_model
from backend.health.risk.baseline import baseline_score
from backend.health.risk.features import FEATURES, LOOKBACK, extract
from backend.health.risk.model import Dataset, RiskModel, Scores
from backend.telemetry.faults import KINDS, FaultSpec
from backend.telemetry.simulator import Fleet

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class FleetSpec:
    """How big and how faulty each simulated fleet is."""

    hosts: int = 3
    gpus_per_host: int = 8
    hours: float = 36.0
    interval_s: float = 60.0
    fault_share: float = 0.4
    snapshot_every_h: float = 1.0
    lookback: timedelta = LOOKBACK




def _faults(seed: int, spec: FleetSpec, gpus: int) -> list[FaultSpec]:
    """Faults of random kinds on `fault_share` of the GPUs, starting anywhere in the simulated span."""
    rng = random.Random(f"risk/{seed}")
    count = max(1, round(spec.fault_share * gpus))
    span_min = int(spec.hours * 60)
    return [FaultSpec(rng.choice(KINDS), onset=timedelta(minutes=rng.randrange(60, span_min))) for _ in range(count)]


def simulate(seed: int, spec: FleetSpec, horizon: timedelta, policy: HealthPolicy | None = None) -> Dataset:
    """One simulated fleet → one row per (GPU, snapshot)."""
    probe = Fleet(spec.hosts, spec.gpus_per_host, seed=seed, start=EPOCH)
    fleet = Fleet(spec.hosts, spec.gpus_per_host, seed=seed, start=EPOCH,
                  faults=_faults(seed, spec, len(probe.gpus)))
    per_gpu: dict[str, list[Sample]] = {g.uuid: [] for g in fleet.gpus}
    end = EPOCH + timedelta(hours=spec.hours)
    for s in fleet.samples(end=end, interval=timedelta(seconds=spec.interval_s)):
        per_gpu[s.gpu_uuid].append(Sample(s.ts, s.metrics))
    policy = policy or HealthPolicy()
    rows, labels, scores, started = [], [], [], []
    step = timedelta(hours=spec.snapshot_every_h)
    for gpu in fleet.gpus:
        samples = per_gpu[gpu.uuid]
        times = [s.time for s in samples]
        at = EPOCH + spec.lookback
        while at <= end:
            if not fleet.schedule.failed(gpu.uuid, at) and times and times[-1] >= at - timedelta(minutes=5):
                lo = max(0, bisect.bisect_right(times, at - spec.lookback) - 1)
                window = samples[lo:bisect.bisect_right(times, at)]
                feats = extract(window, at, spec.lookback)
                rows.append([feats[name] for name in FEATURES])
                history = GpuHistory(gpu.uuid, gpu.host, gpu.index, gpu.model.name, window)
                scores.append(baseline_score(history, at, policy))
                labels.append(fleet.schedule.critical_within(gpu.uuid, at, horizon))
                started.append(bool(fleet.schedule.active(gpu.uuid, at)))
            at += step
    return Dataset(np.array(rows, dtype=float).reshape(-1, len(FEATURES)), np.array(labels, dtype=int),
                   np.array(scores, dtype=float), np.array(started, dtype=bool), [seed])


def build(seeds: list[int], spec: FleetSpec, horizon: timedelta,
          advance: Callable[[int], None] | None = None) -> Dataset:
    parts = []
    for seed in seeds:
        parts.append(simulate(seed, spec, horizon))
        if advance:
            advance(1)
    return Dataset.concat(parts)


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
