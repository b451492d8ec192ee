"""Per-address brute-force protection for publish attempts: count failures, back off exponentially, lock out.

After `threshold` failures within `window` an address is locked for `base` seconds; every further failure after
a lock doubles it, up to `max`. A quiet `window` after the last failure (or lock) forgets the address. Attempts
while locked are refused without looking at the key, and do not extend the lock (so a client's automatic
reconnects cannot lock it forever).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from backend import audit
from backend.config import Settings
from backend.errors import InvalidInput
from backend.identity.principal import Principal, Role, require_role


@dataclass(frozen=True)
class LockoutPolicy:
    threshold: int = 5
    base: timedelta = timedelta(seconds=60)
    max: timedelta = timedelta(hours=1)
    window: timedelta = timedelta(minutes=15)

    @classmethod
    def from_settings(cls, settings: Settings) -> LockoutPolicy:
        return cls(
            threshold=settings.streams_lockout_threshold,
            base=timedelta(seconds=settings.streams_lockout_base_seconds),
            max=timedelta(seconds=settings.streams_lockout_max_seconds),
            window=timedelta(seconds=settings.streams_failure_window_seconds),
        )


@dataclass(frozen=True)
class FailureState:
    """One address's row in `stream_auth_failures`."""

    addr: str
    failures: int
    first_failed_at: datetime
    last_failed_at: datetime
    locked_until: datetime | None

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now


def after_failure(state: FailureState | None, addr: str, now: datetime, policy: LockoutPolicy) -> FailureState:
    """The address's state after one more failure."""
    last_activity = max(state.last_failed_at, state.locked_until or state.last_failed_at) if state else None
    if state is None or last_activity is None or now - last_activity > policy.window:
        failures, first = 1, now
    else:
        failures, first = state.failures + 1, state.first_failed_at
    locked_until = now + lock_length(failures - policy.threshold, policy) if failures >= policy.threshold else None
    return FailureState(addr, failures, first, now, locked_until)


def lock_length(doublings: int, policy: LockoutPolicy) -> timedelta:
    """`base * 2**doublings`, capped at `max` before it is computed: a timedelta overflows after ~45 doublings."""
    factor = 2 ** min(doublings, 64)  # a small power even for billions of failures
    return policy.max if factor >= policy.max / policy.base else policy.base * factor  # below max: cannot overflow


_COLUMNS = "host(addr) AS addr, failures, first_failed_at, last_failed_at, locked_until"


def list_failures(conn: psycopg.Connection, actor: Principal, *, locked_only: bool = False) -> list[FailureState]:
    """Addresses with recent failures, locked ones first."""
    require_role(actor, Role.viewer, "list publish lockouts")
    where = "WHERE locked_until > now()" if locked_only else ""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM stream_auth_failures {where} "
        "ORDER BY locked_until DESC NULLS LAST, last_failed_at DESC"
    ).fetchall()
    return [FailureState(**r) for r in rows]


def clear(conn: psycopg.Connection, actor: Principal, addr: str | None = None) -> int:
    """Forget failures (one address, or all when `addr` is None); returns how many addresses were cleared."""
    require_role(actor, Role.operator, "clear publish lockouts")
    if addr is None:
        cleared = conn.execute("DELETE FROM stream_auth_failures").rowcount
    else:
        try:
            ipaddress.ip_address(addr)
        except ValueError:
            raise InvalidInput(f"invalid address {addr!r}: give an IPv4 or IPv6 address") from None
        cleared = conn.execute("DELETE FROM stream_auth_failures WHERE addr = %s::inet", (addr,)).rowcount
    audit.record(conn, actor=actor.name, area="streams", action="lockout.clear", target=addr or "*", outcome="ok",
                 detail={"cleared": cleared})
    return cleared
