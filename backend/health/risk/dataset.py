"""Training data from simulated fleets: faults injected at seeded times, features at regular snapshots, and the
label "a critical fault begins on this GPU within the next H hours" from the simulator's fault schedule.

Snapshots of GPUs that have already failed are left out (there is nothing left to predict), as are snapshots
without a full lookback of data. Everything is computed in memory: no Kafka, no database.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from backend.health.evaluate import HealthPolicy
from backend.health.history import GpuHistory, Sample
from backend.health.risk.baseline import baseline_score
from backend.health.risk.features import FEATURES, LOOKBACK, extract
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


@dataclass
class Dataset:
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
