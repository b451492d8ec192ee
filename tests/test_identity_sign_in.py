"""Sign-in hardening: one message for every refusal, per-address backoff, account lockout only by many addresses,
the client address behind proxies, and single sign-on claims (verified e-mail, allowed issuer or domain)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from backend import audit
from backend.config import Settings
from backend.console_auth import client_address, login, login_oidc, oidc_user_name
from backend.errors import ConfigError
from backend.identity import SYSTEM, Role
from backend.identity import users as svc
from backend.identity.throttle import SignInPolicy, client_key

PASSWORD = "a long password"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
ATTACKER, OFFICE = "203.0.113.7", "198.51.100.20"
WRONG = "wrong password!"
POLICY = SignInPolicy()


def _fail(db: psycopg.Connection, name: str, addr: str, now: datetime, password: str = WRONG) -> str:
    """One refused sign-in; returns the reason the audit recorded."""
    with pytest.raises(svc.LoginFailed) as refused:
        svc.authenticate(db, name, password, addr=addr, now=now)
    assert str(refused.value) == svc.LoginFailed.MESSAGE
    return refused.value.reason


def _address_row(db: psycopg.Connection, addr: str) -> dict:
    return db.execute("SELECT failures, last_failed_at, locked_until FROM login_address_failures "
                      "WHERE addr = %s::inet", (client_key(addr),)).fetchone()


def test_every_refusal_reads_the_same_and_the_audit_keeps_the_reason(db: psycopg.Connection) -> None:
    svc.add_user(db, SYSTEM, "bob", Role.viewer, PASSWORD)
    svc.add_user(db, SYSTEM, "dora", Role.viewer, PASSWORD)
    svc.set_disabled(db, SYSTEM, "dora", True)
    reasons = [_fail(db, "bob", OFFICE, T0), _fail(db, "nobody", OFFICE, T0),
               _fail(db, "dora", OFFICE, T0, PASSWORD)]
    db.execute("UPDATE users SET locked_until = %s WHERE name = 'bob'", (T0 + timedelta(minutes=5),))
    reasons.append(_fail(db, "bob", OFFICE, T0, PASSWORD))
    for _ in range(POLICY.address.threshold):
        _fail(db, "nobody", ATTACKER, T0)
    reasons.append(_fail(db, "bob", ATTACKER, T0 + timedelta(seconds=1), PASSWORD))
    assert reasons == ["bad credentials", "bad credentials", "disabled", "account locked", "address throttled"]
    logged = [(e.outcome, e.detail) for e in audit.entries(db, area="users") if e.action == "login"]
    assert ("denied", {"reason": "address throttled", "addr": ATTACKER}) in logged
    assert ("denied", {"reason": "disabled", "addr": OFFICE}) in logged


def test_one_address_backs_off_without_locking_the_account(db: psycopg.Connection) -> None:
    svc.add_user(db, SYSTEM, "admin", Role.admin, PASSWORD)
    for _ in range(POLICY.address.threshold):
        _fail(db, "admin", ATTACKER, T0)
    assert _fail(db, "admin", ATTACKER, T0 + timedelta(seconds=1), PASSWORD) == "address throttled"
    assert svc.authenticate(db, "admin", PASSWORD, addr=OFFICE, now=T0 + timedelta(seconds=1)).name == "admin"
    assert db.execute("SELECT locked_until FROM users WHERE name = 'admin'").fetchone()["locked_until"] is None


def test_the_backoff_doubles_up_to_the_cap_and_waiting_attempts_do_not_extend_it(db: psycopg.Connection) -> None:
    now = T0
    for _ in range(POLICY.address.threshold):
        _fail(db, "admin", ATTACKER, now)
    waits = []
    for _ in range(7):
        row = _address_row(db, ATTACKER)
        waits.append(int((row["locked_until"] - row["last_failed_at"]).total_seconds()))
        assert _fail(db, "admin", ATTACKER, row["locked_until"] - timedelta(seconds=1)) == "address throttled"
        assert _address_row(db, ATTACKER)["locked_until"] == row["locked_until"], "a refused wait must not extend it"
        now = row["locked_until"] + timedelta(seconds=1)
        _fail(db, "admin", ATTACKER, now)
    assert waits == [30, 60, 120, 240, 480, 900, 900]


def test_a_single_address_can_never_lock_the_account(db: psycopg.Connection) -> None:
    """Two hours of guessing from one address, as fast as the backoff allows: the owner signs in from elsewhere."""
    svc.add_user(db, SYSTEM, "admin", Role.admin, PASSWORD)
    now, attempts = T0, 0
    while now < T0 + timedelta(hours=2):
        _fail(db, "admin", ATTACKER, now)
        attempts += 1
        locked_until = _address_row(db, ATTACKER)["locked_until"]
        now = max(now, locked_until or now) + timedelta(seconds=1)
    assert POLICY.address.threshold + 6 < attempts < 20, "the backoff must slow a single address down"
    assert db.execute("SELECT locked_until FROM users WHERE name = 'admin'").fetchone()["locked_until"] is None
    assert svc.authenticate(db, "admin", PASSWORD, addr=OFFICE, now=now).name == "admin"


def test_failures_from_many_addresses_lock_the_account_for_everyone(db: psycopg.Connection) -> None:
    svc.add_user(db, SYSTEM, "carol", Role.viewer, PASSWORD)
    for i in range(POLICY.account_addresses):
        _fail(db, "carol", f"192.0.2.{i + 1}", T0)
    assert _fail(db, "carol", OFFICE, T0 + timedelta(minutes=1), PASSWORD) == "account locked"
    later = T0 + POLICY.account_lock + timedelta(seconds=1)
    assert svc.authenticate(db, "carol", PASSWORD, addr=OFFICE, now=later).name == "carol"


def test_unlock_lifts_the_lock_and_forgets_the_failures_behind_it(db: psycopg.Connection) -> None:
    svc.add_user(db, SYSTEM, "carol", Role.viewer, PASSWORD)
    for i in range(POLICY.account_addresses - 1):
        _fail(db, "carol", f"192.0.2.{i + 1}", T0)
    svc.unlock(db, SYSTEM, "carol")
    assert _fail(db, "carol", "192.0.2.200", T0) == "bad credentials"
    assert svc.authenticate(db, "carol", PASSWORD, addr=OFFICE, now=T0).name == "carol", "one more must not lock"


def test_parallel_guesses_from_one_address_are_each_counted(settings: Settings, db: psycopg.Connection) -> None:
    svc.add_user(db, SYSTEM, "admin", Role.admin, PASSWORD)
    guesses = POLICY.address.threshold - 1
    start = threading.Barrier(guesses)

    def guess() -> None:
        start.wait()
        with pytest.raises(svc.LoginFailed):
            login("admin", WRONG, settings, addr=ATTACKER)

    with ThreadPoolExecutor(guesses) as pool:
        for done in [pool.submit(guess) for _ in range(guesses)]:
            done.result()
    assert db.execute("SELECT failures FROM login_address_failures").fetchone()["failures"] == guesses


def test_ipv6_counts_per_64_and_ipv4_mapped_as_ipv4() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:203.0.113.7") == client_key("203.0.113.7") == "203.0.113.7"


def test_client_address_trusts_forwarded_for_only_from_configured_proxies() -> None:
    spoofed = "198.51.100.99"
    assert client_address("203.0.113.7", spoofed, []) == "203.0.113.7"
    assert client_address(None, spoofed, []) == "127.0.0.1", "Streamlit reports loopback peers as None"
    assert client_address(object(), None, []) == "127.0.0.1", "an unknown peer counts as loopback"
    assert client_address(None, "203.0.113.7", ["127.0.0.1/32"]) == "203.0.113.7"
    lb = ["10.0.0.0/8", "35.191.0.0/16"]
    assert client_address("10.0.0.2", f"{spoofed}, 203.0.113.7, 35.191.0.9", lb) == "203.0.113.7"
    assert client_address("10.0.0.2", "not-an-address, 35.191.0.9", lb) == "35.191.0.9"
    assert client_address("10.0.0.2", None, lb) == "10.0.0.2"
    with pytest.raises(ConfigError, match="CONSOLE_TRUSTED_PROXIES"):
        client_address("10.0.0.2", None, ["10.0.0.0/33"])


def test_console_login_counts_against_the_given_address(settings: Settings, db: psycopg.Connection) -> None:
    svc.add_user(db, SYSTEM, "erin", Role.operator, PASSWORD)
    for _ in range(POLICY.address.threshold):
        with pytest.raises(svc.LoginFailed):
            login("erin", WRONG, settings, addr=ATTACKER)
    with pytest.raises(svc.LoginFailed, match=r"^invalid credentials or locked$"):
        login("erin", PASSWORD, settings, addr=ATTACKER)
    assert login("erin", PASSWORD, settings, addr=OFFICE).name == "erin"


ISSUER = "https://idp.example.com"


def _claims(**overrides: object) -> dict[str, object]:
    return {"is_logged_in": True, "iss": ISSUER, "email": "Jane@Example.com", "email_verified": True,
            "sub": "1234", **overrides}


@pytest.mark.parametrize(("claims", "issuers", "domains"), [
    (_claims(), [ISSUER], []),
    (_claims(iss="https://other.example"), [], ["example.com"]),
    (_claims(email_verified="true"), [ISSUER], []),
])
def test_oidc_accepts_a_verified_email_from_an_allowed_issuer_or_domain(claims, issuers, domains) -> None:
    assert oidc_user_name(claims, issuers=issuers, domains=domains) == "jane@example.com"


@pytest.mark.parametrize(("claims", "issuers", "domains", "reason"), [
    (_claims(email_verified=False), [ISSUER], ["example.com"], "not verified"),
    (_claims(email_verified="false"), [ISSUER], [], "not verified"),
    ({k: v for k, v in _claims().items() if k != "email_verified"}, [ISSUER], [], "not verified"),
    (_claims(email_verified=1), [ISSUER], [], "not verified"),
    (_claims(), [], [], "not allowed"),
    (_claims(), ["https://idp.example.com/"], ["example.org"], "not allowed"),
    (_claims(iss="https://evil.example"), [ISSUER], ["example.org"], "not allowed"),
    (_claims(email="jane@example.com.evil.io", iss="https://evil.example"), [], ["example.com"], "not allowed"),
    (_claims(email="jane@sub.example.com", iss="https://evil.example"), [], ["example.com"], "not allowed"),
    (_claims(email=""), [ISSUER], [], "no e-mail"),
    (_claims(email="not-an-email"), [ISSUER], [], "no e-mail"),
])
def test_oidc_refuses_unverified_or_unlisted_claims(claims, issuers, domains, reason) -> None:
    with pytest.raises(svc.LoginFailed, match=r"^invalid credentials or locked$") as refused:
        oidc_user_name(claims, issuers=issuers, domains=domains)
    assert reason in refused.value.reason


def test_oidc_sign_in_needs_an_enabled_user_and_audits_why_not(settings: Settings, db: psycopg.Connection) -> None:
    allowed = settings.model_copy(update={"oidc_allowed_issuers": [ISSUER]})
    with pytest.raises(svc.LoginFailed, match=r"^invalid credentials or locked$"):
        login_oidc(_claims(), allowed)
    svc.add_user(db, SYSTEM, "jane@example.com", Role.operator, PASSWORD)
    assert login_oidc(_claims(), allowed).role is Role.operator
    with pytest.raises(svc.LoginFailed):
        login_oidc(_claims(email_verified=False), allowed)
    with pytest.raises(svc.LoginFailed):
        login_oidc(_claims(), settings)
    reasons = [(e.outcome, e.detail.get("reason")) for e in audit.entries(db, area="users") if e.action == "login"]
    assert reasons[::-1] == [("denied", "no such user"), ("ok", None),
                             ("denied", "e-mail not verified by the identity provider"),
                             ("denied", f"issuer {ISSUER!r} and domain 'example.com' are not allowed")]
