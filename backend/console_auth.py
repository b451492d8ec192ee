"""Console sign-in: password login with throttling, OIDC claims mapping, the client address and session re-checks.

The console keeps only the `Principal` in its session; every rerun re-reads the user so a disabled account or a
changed role takes effect at once. Failed logins are committed even though `authenticate` raises, otherwise the
throttle's counters would roll back with the error. Every refusal reads "invalid credentials or locked"; the
reason is in the audit log.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Collection, Mapping

from backend import audit
from backend.config import Settings, get_settings
from backend.db import connect
from backend.errors import ConfigError
from backend.identity.principal import Principal
from backend.identity.throttle import SignInPolicy
from backend.identity.users import LoginFailed, authenticate, get_user

log = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"


def login(name: str, password: str, settings: Settings | None = None, *, addr: str = LOOPBACK) -> Principal:
    """Check a user name and password from a client address; raises `LoginFailed` (and counts the failure)."""
    name = name.strip().lower()
    if not name or not password:
        raise LoginFailed("empty user name or password")
    settings = settings or get_settings()
    with connect(settings) as conn:
        try:
            return authenticate(conn, name, password, addr=addr, policy=SignInPolicy.from_settings(settings))
        finally:
            conn.commit()


def client_address(peer: object, forwarded_for: str | None, trusted_proxies: Collection[str]) -> str:
    """The address a browser signs in from, for the throttle.

    `peer` is the connection's address as Streamlit reports it (`st.context.ip_address`: None for a loopback peer,
    and anything that is not an address counts as loopback too). When the peer is a trusted proxy, the client is
    the rightmost `X-Forwarded-For` hop that is not a trusted proxy; anyone else's header is ignored, since a
    client could write any address there to dodge its backoff.
    """
    try:
        trusted = [ipaddress.ip_network(net, strict=False) for net in trusted_proxies]
    except ValueError as exc:
        raise ConfigError(f"invalid CONSOLE_TRUSTED_PROXIES: {exc}") from None
    client = _address(peer) or ipaddress.ip_address(LOOPBACK)
    hops = [hop.strip() for hop in forwarded_for.split(",")] if forwarded_for else []
    while hops and any(client in net for net in trusted):
        hop = _address(hops.pop())
        if hop is None:  # a garbled header: keep the last proxy we could read
            break
        client = hop
    return str(client)


def _address(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value) if isinstance(value, str) else None
    except ValueError:
        return None


def oidc_user_name(claims: Mapping[str, object], *, issuers: Collection[str], domains: Collection[str]) -> str:
    """The user name an identity provider's ID-token claims sign in as: the e-mail, when the provider verified it
    (`email_verified` true) and the issuer or the e-mail's domain is allowed. `LoginFailed` (with the reason)
    otherwise; with both allow-lists empty nobody signs in this way."""
    email = str(claims.get("email") or "").strip().lower()
    local, _, domain = email.rpartition("@")
    if not local or not domain:
        raise LoginFailed("no e-mail claim")
    verified = claims.get("email_verified")
    if not (verified is True or (isinstance(verified, str) and verified.lower() == "true")):
        raise LoginFailed("e-mail not verified by the identity provider")
    issuer = str(claims.get("iss") or "")
    if issuer not in issuers and domain not in {d.strip().lower() for d in domains}:
        raise LoginFailed(f"issuer {issuer!r} and domain {domain!r} are not allowed")
    return email


def login_oidc(claims: Mapping[str, object], settings: Settings | None = None) -> Principal:
    """The principal for a single sign-on: allowed claims (`oidc_user_name`) of an enabled user of that name."""
    settings = settings or get_settings()
    claimed = str(claims.get("email") or "").strip().lower()
    principal, reason = None, None
    try:
        name = oidc_user_name(claims, issuers=settings.oidc_allowed_issuers,
                              domains=settings.oidc_allowed_email_domains)
    except LoginFailed as refused:
        reason = refused.reason
    with connect(settings) as conn:
        if reason is None:
            user = get_user(conn, name)
            if user is None:
                reason = "no such user"
            elif user.disabled:
                reason = "disabled"
            else:
                principal = user.principal
        detail = {"method": "oidc", "issuer": str(claims.get("iss") or "")} | ({"reason": reason} if reason else {})
        audit.record(conn, actor=claimed or "?", area="users", action="login", target=claimed or None,
                     outcome="denied" if principal is None else "ok", detail=detail)
        conn.commit()
    if principal is None:
        log.warning("single sign-on refused for %r: %s", claimed, reason)
        raise LoginFailed(str(reason))
    return principal


def current(principal: Principal, settings: Settings | None = None) -> Principal | None:
    """The principal as the users table says now: `None` once the user is gone or disabled."""
    with connect(settings or get_settings()) as conn:
        user = get_user(conn, principal.name)
    if user is None or user.disabled:
        return None
    return user.principal
