"""Simulated `token.usage.v1` for a simulated fleet: what the inference servers on each GPU would report.

Tokens follow the GPU's utilization in the `gpu.metrics.v1` samples, so cost per token computed downstream is
consistent with the GPU telemetry. Only GPUs with an inference workload serve a model; a GPU that stops reporting
(XID 79) stops serving.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from backend.telemetry.messages import GpuSample, TokenUsage
from backend.telemetry.simulator import Fleet, SimGpu

# Output tokens/s one GPU sustains at full load, per served model and GPU model (order of magnitude of vLLM).
PEAK_TOKENS_PER_S: dict[str, dict[str, float]] = {
    "llama-3.1-70b": {"h100": 1400.0, "a100": 700.0, "l4": 60.0},
    "mixtral-8x7b": {"h100": 2600.0, "a100": 1500.0, "l4": 200.0},
    "llama-3.1-8b": {"h100": 7000.0, "a100": 4200.0, "l4": 1100.0},
    "mistral-7b": {"h100": 7500.0, "a100": 4500.0, "l4": 1200.0},
}
_BASE_LATENCY_MS = {"llama-3.1-70b": 900.0, "mixtral-8x7b": 600.0, "llama-3.1-8b": 250.0, "mistral-7b": 220.0}


@dataclass
class _Window:
    started: datetime
    completion: float = 0.0
    prompt: float = 0.0
    load_seconds: float = 0.0
    seconds: float = 0.0


class TokenMeter:
    """Turns a fleet's GPU samples into one `TokenUsage` per serving GPU every `every` (aligned to the clock)."""

    def __init__(self, fleet: Fleet, every: timedelta = timedelta(seconds=60)) -> None:
        self.every = every
        self._gpus: dict[str, SimGpu] = {g.uuid: g for g in fleet.gpus if g.served_model}
        self._rngs = {u: random.Random(f"{fleet.seed}/{u}/tokens") for u in self._gpus}
        self._windows: dict[str, _Window] = {}
        self._last: dict[str, datetime] = {}

    def observe(self, sample: GpuSample) -> TokenUsage | None:
        """Account for the time since this GPU's previous sample; return a report when a window closes."""
        gpu = self._gpus.get(sample.gpu_uuid)
        if gpu is None or gpu.served_model is None:
            return None
        previous = self._last.get(gpu.uuid)
        self._last[gpu.uuid] = sample.ts
        window = self._windows.setdefault(gpu.uuid, _Window(self._floor(sample.ts)))
        if previous is None:
            return None
        dt = (sample.ts - previous).total_seconds()
        load = float(sample.metrics.get("gpu_util", 0)) / 100
        if sample.metrics.get("xid_errors") == 79:
            load = 0.0
        rng = self._rngs[gpu.uuid]
        completion = PEAK_TOKENS_PER_S[gpu.served_model][gpu.model.key] * load * dt * rng.uniform(0.9, 1.1)
        window.completion += completion
        window.prompt += completion * rng.uniform(2.0, 4.0)
        window.load_seconds += load * dt
        window.seconds += dt
        if sample.ts - window.started < self.every:
            return None
        del self._windows[gpu.uuid]
        self._windows[gpu.uuid] = _Window(self._floor(sample.ts))
        return self._report(gpu, sample.ts, window, rng)

    def _floor(self, ts: datetime) -> datetime:
        step = self.every.total_seconds()
        return datetime.fromtimestamp(ts.timestamp() // step * step, ts.tzinfo)

    def _report(self, gpu: SimGpu, ts: datetime, w: _Window, rng: random.Random) -> TokenUsage:
        completion = int(w.completion)
        mean_load = w.load_seconds / w.seconds if w.seconds else 0.0
        p50 = _BASE_LATENCY_MS[gpu.served_model or ""] * (1 + 1.5 * mean_load ** 2) * rng.uniform(0.95, 1.05)
        return TokenUsage(
            ts=ts, host=gpu.host, gpu_uuid=gpu.uuid, served_model=gpu.served_model or "", interval_s=w.seconds,
            requests=round(completion / rng.uniform(180, 320)), prompt_tokens=int(w.prompt),
            completion_tokens=completion, latency_ms_p50=round(p50, 1),
            latency_ms_p95=round(p50 * (1.8 + mean_load), 1), labels={"engine": "vllm"},
        )


def with_token_usage(fleet: Fleet, samples: Iterable[GpuSample], every: timedelta = timedelta(seconds=60),
                     ) -> Iterator[GpuSample | TokenUsage]:
    """The samples, each followed by the token report its GPU closed (if any)."""
    meter = TokenMeter(fleet, every)
    for sample in samples:
        yield sample
        usage = meter.observe(sample)
        if usage is not None:
            yield usage


def token_usage_only(fleet: Fleet, samples: Iterable[GpuSample], every: timedelta = timedelta(seconds=60),
                     ) -> Iterator[TokenUsage]:
    """Just the token reports (the `--source tokens` collector)."""
    for message in with_token_usage(fleet, samples, every):
        if isinstance(message, TokenUsage):
            yield message
