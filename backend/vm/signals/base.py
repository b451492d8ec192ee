"""The signal seam: one `sample()` per source, returning a `Reading` with its evidence."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import psutil

log = logging.getLogger(__name__)

State = Literal["idle", "active", "unknown", "n/a"]
BLOCKING: frozenset[str] = frozenset({"active", "unknown"})


@dataclass(frozen=True)
class Reading:
    """What one signal saw: its state, a one-line human reason, and the measured values behind it."""

    signal: str
    state: State
    evidence: str
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def blocks(self) -> bool:
        """Active and unknown both keep the machine up."""
        return self.state in BLOCKING


def utc_now() -> datetime:
    """The clock the agent and its signals read by default; tests hand both the same fake one."""
    return datetime.now(UTC)


def boot_time() -> datetime:
    """When this machine booted: a new boot starts a fresh countdown and a fresh set of GPUs."""
    return datetime.fromtimestamp(psutil.boot_time(), UTC)


class Signal(Protocol):
    name: str

    def sample(self) -> Reading: ...


def sample_all(signals: list[Signal]) -> list[Reading]:
    """Sample every signal; a signal that raises reads `unknown` (and so blocks) instead of killing the agent."""
    readings = []
    for signal in signals:
        try:
            readings.append(signal.sample())
        except Exception as exc:
            log.warning("signal %s failed: %s", signal.name, exc, exc_info=log.isEnabledFor(logging.DEBUG))
            readings.append(Reading(signal.name, "unknown", f"{signal.name} could not be read: {type(exc).__name__}"))
    return readings


class Rate:
    """Per-second change of monotonically growing counters between two samples.

    The agent's previous poll is the baseline; the very first sample waits `first_window` seconds for one, so a
    one-shot `evaluate` still measures a real rate instead of guessing.
    """

    def __init__(self, read: Callable[[], dict[str, float]], first_window: float = 1.0) -> None:
        self.read, self.first_window = read, first_window
        self._last: tuple[float, dict[str, float]] | None = None

    def per_second(self) -> tuple[dict[str, float], float]:
        """Rates by key and the seconds they were measured over."""
        if self._last is None:
            self._last = (time.monotonic(), self.read())
            time.sleep(self.first_window)
        then, before = self._last
        now, after = time.monotonic(), self.read()
        self._last = (now, after)
        span = max(now - then, 1e-6)
        return {k: max(after[k] - before.get(k, after[k]), 0.0) / span for k in after}, span

    @property
    def latest(self) -> dict[str, float]:
        """The counters as last read."""
        return self._last[1] if self._last else {}
