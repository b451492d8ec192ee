"""Per-address brute-force protection for publish attempts: count failures, back off exponentially, lock out.

The policy is `backend.backoff`'s, with the streams settings. Attempts while locked are refused without looking at
the key, and do not extend the lock (so a client's automatic reconnects cannot lock it forever).
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta

import psycopg

from backend import audit
from backend.backoff import BackoffPolicy, FailureState
from backend.config import Settings
from backend.errors import InvalidInput
from backend.identity.principal import Principal, Role, require_role


class LockoutPolicy(BackoffPolicy):
    """The publish lockout: the shared backoff, configured by the `STREAMS_LOCKOUT_*` settings."""

    @classmethod
    def from_settings(cls, settings: Settings) -> LockoutPolicy:
        return cls(
            threshold=settings.streams_lockout_threshold,
            base=timedelta(seconds=settings.streams_lockout_base_seconds),
            max=timedelta(seconds=settings.streams_lockout_max_seconds),
            window=timedelta(seconds=settings.streams_failure_window_seconds),
        )


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
