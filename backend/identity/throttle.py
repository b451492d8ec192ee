"""Sign-in throttling: guessing gets slow, and nobody can keep an account locked out for everyone else.

Two guards, both in the database so every console process shares them:

- per client address: after `threshold` failures within `window` the address waits `base`, doubling with each
  further failure up to `max` — the clamped backoff the publish lockout uses too (`backend.backoff`),
  applied to sign-in. Attempts while an address waits are refused unchecked and do not extend the wait.
- per account: the account locks for `account_lock` only when failures against it come from at least
  `account_addresses` distinct addresses within `window` (a distributed guess). One address alone can never
  lock an account; it only slows itself down.

IPv6 addresses count per /64 (one host usually holds a whole /64), IPv4-mapped IPv6 addresses as IPv4.
A successful sign-in forgets the account's failures but not the address's: otherwise anyone with an account
could reset their own backoff between guesses at someone else's.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg

from backend.backoff import BackoffPolicy, FailureState, after_failure
from backend.config import Settings
from backend.errors import InvalidInput


@dataclass(frozen=True)
class SignInPolicy:
    address: BackoffPolicy = field(default_factory=lambda: BackoffPolicy(
        threshold=5, base=timedelta(seconds=30), max=timedelta(minutes=15), window=timedelta(minutes=15)))
    account_addresses: int = 5
    account_lock: timedelta = timedelta(minutes=15)

    @classmethod
    def from_settings(cls, settings: Settings) -> SignInPolicy:
        return cls(
            address=BackoffPolicy(
                threshold=settings.signin_throttle_threshold,
                base=timedelta(seconds=settings.signin_throttle_base_seconds),
                max=timedelta(seconds=settings.signin_throttle_max_seconds),
                window=timedelta(seconds=settings.signin_failure_window_seconds),
            ),
            account_addresses=settings.signin_account_lock_addresses,
            account_lock=timedelta(seconds=settings.signin_account_lock_seconds),
        )


def client_key(addr: str) -> str:
    """What failures count against: the IPv4 address, or the IPv6 address's /64."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        raise InvalidInput(f"invalid client address {addr!r}") from None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def hold_address(conn: psycopg.Connection, key: str) -> FailureState | None:
    """Serialize sign-ins from one address until the transaction ends, and read its failures.

    Without the lock, parallel guesses would all read the same count and record one failure between them.
    """
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('signin ' || %s, 0))", (key,))
    row = conn.execute(
        "SELECT failures, first_failed_at, last_failed_at, locked_until FROM login_address_failures "
        "WHERE addr = %s::inet", (key,)
    ).fetchone()
    return FailureState(key, **row) if row else None


def address_failed(conn: psycopg.Connection, state: FailureState | None, key: str, now: datetime,
                   policy: SignInPolicy) -> FailureState:
    """Count one more failure from the address; forget addresses quiet for longer than the window."""
    after = after_failure(state, key, now, policy.address)
    conn.execute(
        "INSERT INTO login_address_failures (addr, failures, first_failed_at, last_failed_at, locked_until) "
        "VALUES (%s::inet, %s, %s, %s, %s) ON CONFLICT (addr) DO UPDATE SET failures = EXCLUDED.failures, "
        "first_failed_at = EXCLUDED.first_failed_at, last_failed_at = EXCLUDED.last_failed_at, "
        "locked_until = EXCLUDED.locked_until",
        (key, after.failures, after.first_failed_at, after.last_failed_at, after.locked_until),
    )
    conn.execute("DELETE FROM login_address_failures WHERE greatest(last_failed_at, locked_until) < %s",
                 (now - policy.address.window,))
    return after


def account_failed(conn: psycopg.Connection, name: str, key: str, now: datetime,
                   policy: SignInPolicy) -> datetime | None:
    """Count a failure against an existing account; returns when the account is locked until, if it now is."""
    conn.execute(
        "INSERT INTO login_account_failures (name, addr, last_failed_at) VALUES (%s, %s::inet, %s) "
        "ON CONFLICT (name, addr) DO UPDATE SET last_failed_at = EXCLUDED.last_failed_at",
        (name, key, now),
    )
    conn.execute("DELETE FROM login_account_failures WHERE name = %s AND last_failed_at < %s",
                 (name, now - policy.address.window))
    addresses = conn.execute("SELECT count(*) AS n FROM login_account_failures WHERE name = %s",
                             (name,)).fetchone()["n"]
    if addresses < policy.account_addresses:
        return None
    forget_account(conn, name)
    return now + policy.account_lock


def forget_account(conn: psycopg.Connection, name: str) -> None:
    conn.execute("DELETE FROM login_account_failures WHERE name = %s", (name,))
