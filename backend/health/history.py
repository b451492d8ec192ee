"""A GPU's recent telemetry as the rules see it: plain dataclasses, so rules are testable on crafted histories."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise

Point = tuple[datetime, float]


@dataclass(frozen=True)
class Sample:
    time: datetime
    values: Mapping[str, float | None]


@dataclass
class GpuHistory:
    """Samples in time order (oldest first), plus counter values from a week ago for week-over-week rules."""

    gpu_uuid: str
    host: str
    gpu_index: int
    model: str | None
    samples: list[Sample]
    week_ago: Mapping[str, float | None] = field(default_factory=dict)
    last_seen: datetime | None = None

    def series(self, column: str, since: datetime | None = None) -> list[Point]:
        """(time, value) for samples that carry the column, optionally from `since` on."""
        return [
            (s.time, float(v))
            for s in self.samples
            if (v := s.values.get(column)) is not None and (since is None or s.time >= since)
        ]

    def latest(self, column: str) -> Point | None:
        for sample in reversed(self.samples):
            value = sample.values.get(column)
            if value is not None:
                return sample.time, float(value)
        return None

    @property
    def last_sample_at(self) -> datetime | None:
        """The newest sample loaded, or the inventory's `last_seen` when that is newer (or nothing was loaded)."""
        times = [t for t in (self.samples[-1].time if self.samples else None, self.last_seen) if t is not None]
        return max(times, default=None)


def with_baseline(points: list[Point], start: datetime) -> list[Point]:
    """Points after `start`, preceded by the last point at or before it (the baseline a counter grows from)."""
    before = [p for p in points if p[0] <= start]
    inside = [p for p in points if p[0] > start]
    return ([before[-1]] if before else []) + inside


def increments(points: list[Point]) -> list[tuple[datetime, float]]:
    """Per-sample counter increments; a drop means the counter was reset (driver reload), so the new value counts."""
    steps = []
    for (_, prev), (time, value) in pairwise(points):
        steps.append((time, value - prev if value >= prev else value))
    return steps


def increase(points: list[Point]) -> float:
    return sum(step for _, step in increments(points))


def windowed_rates(points: list[Point], span_s: float) -> list[tuple[datetime, float]]:
    """Per-second counter rate at each point, measured over at least `span_s` back (sliding window)."""
    rates: list[tuple[datetime, float]] = []
    steps = increments(points)
    cumulative = [0.0]
    for _, step in steps:
        cumulative.append(cumulative[-1] + step)
    start = 0
    for end in range(1, len(points)):
        while start + 1 < end and (points[end][0] - points[start + 1][0]).total_seconds() >= span_s:
            start += 1
        elapsed = (points[end][0] - points[start][0]).total_seconds()
        if elapsed >= span_s:
            rates.append((points[end][0], (cumulative[end] - cumulative[start]) / elapsed))
    return rates


def trailing_run_start(points: list[Point], holds: Callable[[float], bool]) -> datetime | None:
    """Start of the run of most recent points for which `holds(value)` is true (None if the latest does not)."""
    start = None
    for time, value in reversed(points):
        if not holds(value):
            break
        start = time
    return start
