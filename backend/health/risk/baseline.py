"""The rule baseline the model must beat: what the health rules say right now, as a score.

Score = 2 per critical finding + 1 per warning finding; "at risk" means a score of 1 or more. This is what an
operator gets from the rules alone, so it is the honest yardstick for the learned model.
"""

from __future__ import annotations

from datetime import datetime

from backend.health.evaluate import HealthPolicy
from backend.health.findings import SEVERITY_RANK
from backend.health.history import GpuHistory
from backend.health.rules import run_rules


def baseline_score(history: GpuHistory, at: datetime, policy: HealthPolicy) -> float:
    return float(sum(SEVERITY_RANK[f.severity] for f in run_rules(history, policy.context(history.model, at))))
