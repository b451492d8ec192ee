"""Failure risk: features from a GPU's recent history, a rule baseline and a gradient-boosting model trained on
simulated fleets with injected faults (label: a critical fault within the next H hours)."""
