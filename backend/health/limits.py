"""Per-model limits: temperature thresholds (GPU die and HBM) and the PCIe link the replay budget scales with.

Defaults follow the SKUs' published operating limits (warning at the max operating temperature, critical at the
slowdown point); override any of them per model with `HEALTH_MODEL_LIMITS` (JSON, keyed by a model-name fragment).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from backend.errors import InvalidInput

# PCIe replays per lane per minute above which the link is unhealthy (DCGM health watch), by generation.
PCIE_REPLAYS_PER_LANE_PER_MIN: dict[int, float] = {3: 0.48, 4: 0.96, 5: 1.92}


@dataclass(frozen=True)
class ModelLimits:
    gpu_temp_warn: float = 85.0
    gpu_temp_crit: float = 90.0
    memory_temp_warn: float = 90.0
    memory_temp_crit: float = 95.0
    pcie_gen: int = 4
    pcie_lanes: int = 16

    @property
    def pcie_replays_per_min(self) -> float:
        return PCIE_REPLAYS_PER_LANE_PER_MIN[self.pcie_gen] * self.pcie_lanes


DEFAULT = ModelLimits()
BUILTIN: dict[str, ModelLimits] = {
    "H200": ModelLimits(gpu_temp_warn=87, gpu_temp_crit=90, memory_temp_warn=90, memory_temp_crit=95, pcie_gen=5),
    "H100": ModelLimits(gpu_temp_warn=87, gpu_temp_crit=90, memory_temp_warn=90, memory_temp_crit=95, pcie_gen=5),
    "A100": ModelLimits(gpu_temp_warn=85, gpu_temp_crit=89, memory_temp_warn=90, memory_temp_crit=95, pcie_gen=4),
    "L40S": ModelLimits(gpu_temp_warn=88, gpu_temp_crit=93, memory_temp_warn=90, memory_temp_crit=95, pcie_gen=4),
    "L4": ModelLimits(gpu_temp_warn=85, gpu_temp_crit=90, memory_temp_warn=90, memory_temp_crit=95, pcie_gen=4),
}
_KNOWN = {f.name for f in fields(ModelLimits)}


def catalog(overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, ModelLimits]:
    """Built-in limits with `HEALTH_MODEL_LIMITS` applied (a new key adds a model, an existing one is patched)."""
    merged = dict(BUILTIN)
    for key, patch in (overrides or {}).items():
        unknown = set(patch) - _KNOWN
        if unknown:
            raise InvalidInput(
                f"HEALTH_MODEL_LIMITS[{key!r}]: unknown field(s) {sorted(unknown)}; use {sorted(_KNOWN)}"
            )
        if "pcie_gen" in patch and int(patch["pcie_gen"]) not in PCIE_REPLAYS_PER_LANE_PER_MIN:
            raise InvalidInput(f"HEALTH_MODEL_LIMITS[{key!r}].pcie_gen must be 3, 4 or 5")
        merged[key.upper()] = replace(merged.get(key.upper(), DEFAULT), **patch)
    return merged


def limits_for(model: str | None, table: dict[str, ModelLimits]) -> ModelLimits:
    """The entry whose key is the longest fragment of the model name ("L40S" before "L4"), else the defaults."""
    name = (model or "").upper()
    matches = [key for key in table if key in name]
    return table[max(matches, key=len)] if matches else DEFAULT
