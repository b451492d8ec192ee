"""Exponential backoff after repeated failures, shared by the publish lockout (`streams.lockout`) and the sign-in
throttle (`identity.throttle`).

After `threshold` failures within `window` a key is locked for `base`; every further failure after a lock doubles
it, up to `max`. A quiet `window` after the last failure (or lock) forgets the key. Pure: callers load and save the
state in their own tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class BackoffPolicy:
    threshold: int = 5
    base: timedelta = timedelta(seconds=60)
    max: timedelta = timedelta(hours=1)
    window: timedelta = timedelta(minutes=15)


@dataclass(frozen=True)
class FailureState:
    """One key's failures (an address, or an address block for sign-in), as its table row holds them."""

    addr: str
    failures: int
    first_failed_at: datetime
    last_failed_at: datetime
    locked_until: datetime | None

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now


def after_failure(state: FailureState | None, addr: str, now: datetime, policy: BackoffPolicy) -> FailureState:
    """The key's state after one more failure."""
    last_activity = max(state.last_failed_at, state.locked_until or state.last_failed_at) if state else None
    if state is None or last_activity is None or now - last_activity > policy.window:
        failures, first = 1, now
    else:
        failures, first = state.failures + 1, state.first_failed_at
    locked_until = now + lock_length(failures - policy.threshold, policy) if failures >= policy.threshold else None
    return FailureState(addr, failures, first, now, locked_until)


def lock_length(doublings: int, policy: BackoffPolicy) -> timedelta:
    """`base * 2**doublings`, capped at `max` before it is computed: a timedelta overflows after ~45 doublings."""
    factor = 2 ** min(doublings, 64)  # a small power even for billions of failures
    return policy.max if factor >= policy.max / policy.base else policy.base * factor  # below max: cannot overflow
