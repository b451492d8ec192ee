"""Idleness signals. Each answers `idle`, `active`, `unknown` or `n/a` with the evidence behind it.

`n/a` means the source does not apply on this host (no GPU, no nginx) and never blocks a stop; `unknown` means a
source that should answer did not, and counts as active: the agent never stops a machine on doubt.
"""

from __future__ import annotations

from backend.vm.signals.base import Reading, Signal, State, sample_all

__all__ = ["Reading", "Signal", "State", "sample_all"]
