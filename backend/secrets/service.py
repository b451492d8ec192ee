"""Secrets as the console, CLI and API use them: authorization, audit, validation, diff and rotation views.

Only `admin` may change or reveal a secret; `operator` sees names and metadata; `viewer` nothing. Every call,
allowed or denied, writes one audit row (area `secrets`) in its own transaction, so a denial is recorded even
when the caller's work rolls back. Values never reach logs, errors, audit rows or reprs: they travel as
`SecretStr`/`SecretBytes`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretBytes, SecretStr

from backend import audit
from backend.config import Settings, get_settings
from backend.db import connect
from backend.errors import InvalidInput, PlatformError
from backend.identity.principal import PermissionDenied, Principal, Role, require_role
from backend.secrets.backends import backend_for
from backend.secrets.base import SecretsBackend
from backend.secrets.diff import SecretDiff, diff_payloads
from backend.secrets.models import (
    RevealedSecret,
    SecretDetails,
    SecretMeta,
    SecretPage,
    SecretSpec,
    SecretVersion,
    VersionAction,
    VersionRef,
    check_labels,
    check_name,
)

log = logging.getLogger(__name__)
AREA = "secrets"
MAX_VALUE_BYTES = 64 * 1024
MIN_ROTATION_PERIOD = timedelta(hours=1)
MIN_ROTATION_LEAD = timedelta(minutes=5)


@dataclass(frozen=True)
class RotationStatus:
    secret: str
    rotation_period: timedelta | None
    next_rotation_time: datetime | None
    latest_version: int | None
    latest_created: datetime | None
    age: timedelta | None
    """Age of the latest enabled version."""
    due_at: datetime
    """The earlier of `next_rotation_time` and latest version's creation + period."""
    overdue: bool


class SecretsService:
    """One object per backend; cheap to build. `get_service()` gives the configured one."""

    def __init__(self, settings: Settings | None = None, backend: SecretsBackend | None = None) -> None:
        self.settings = settings or get_settings()
        self.backend = backend or backend_for(self.settings)

    # -- audit and authorization --------------------------------------------------------------------------

    def _record(self, actor: Principal, action: str, secret: str | None, outcome: audit.Outcome,
                detail: dict[str, Any]) -> None:
        with connect(self.settings, autocommit=True) as conn:
            audit.record(conn, actor=actor.name, area=AREA, action=action, target=secret, outcome=outcome,
                         detail=detail)

    @contextmanager
    def _operation(self, actor: Principal, action: str, secret: str | None = None, *,
                   minimum: Role = Role.admin, version: VersionRef | None = None) -> Iterator[dict[str, Any]]:
        """Check the role, run the block, and audit the outcome; the block may add safe details."""
        detail: dict[str, Any] = {"backend": self.backend.kind}
        if version is not None:
            detail["version"] = version
        try:
            require_role(actor, minimum, f"{action} secrets")
        except PermissionDenied as exc:
            self._record(actor, action, secret, "denied", {**detail, "reason": str(exc)})
            log.warning("denied: %s", exc)
            raise
        try:
            if secret is not None:
                check_name(secret)
            yield detail
        except PlatformError as exc:
            self._record(actor, action, secret, "error", {**detail, "error": str(exc)})
            raise
        except Exception as exc:
            self._record(actor, action, secret, "error", {**detail, "error": type(exc).__name__})
            raise
        self._record(actor, action, secret, "ok", detail)
        log.info("%s %s secret %s (%s)", actor.name, action, secret or "-", self.backend.kind)

    # -- reading ------------------------------------------------------------------------------------------

    def list_secrets(self, actor: Principal, *, labels: dict[str, str] | None = None, page_size: int = 100,
                     page_token: str | None = None) -> SecretPage:
        """One page of secrets (metadata only), ordered by name, filtered by labels."""
        with self._operation(actor, "list", minimum=Role.operator) as detail:
            if not 1 <= page_size <= 1000:
                raise InvalidInput("page size must be between 1 and 1000")
            page = self.backend.list_secrets(labels=check_labels(labels or {}), page_size=page_size,
                                             page_token=page_token)
            detail["count"] = len(page.secrets)
        return page

    def list_all(self, actor: Principal, *, labels: dict[str, str] | None = None) -> list[SecretMeta]:
        """Every page of `list_secrets`, for views that show everything."""
        result: list[SecretMeta] = []
        token: str | None = None
        while True:
            page = self.list_secrets(actor, labels=labels, page_size=1000, page_token=token)
            result.extend(page.secrets)
            if not (token := page.next_page_token):
                return result

    def describe(self, actor: Principal, name: str) -> SecretDetails:
        """Metadata and every version's state (never values)."""
        with self._operation(actor, "describe", name, minimum=Role.operator):
            return SecretDetails(self.backend.get_secret(name), self.backend.list_versions(name))

    def reveal(self, actor: Principal, name: str, version: VersionRef = "latest") -> RevealedSecret:
        """A version's value (admin only, audited); `latest` is the newest enabled version."""
        with self._operation(actor, "reveal", name, version=version) as detail:
            number, data = self.backend.access_version(name, version)
            detail["version"] = number
            return RevealedSecret(name, number, _text(name, number, data))

    # -- changing -----------------------------------------------------------------------------------------

    def create(self, actor: Principal, name: str, spec: SecretSpec | None = None,
               value: SecretStr | str | None = None) -> SecretDetails:
        """Create a secret, and its first version when a value is given."""
        spec = spec or SecretSpec()
        with self._operation(actor, "create", name) as detail:
            spec = _checked_spec(spec)
            secret_value = _checked_value(value) if value is not None else None
            detail.update(labels=sorted(spec.labels), replication=spec.replication.describe())
            meta = self.backend.create_secret(name, spec)
            versions = [self.backend.add_version(name, secret_value)] if secret_value is not None else []
            detail["version"] = versions[0].version if versions else None
        return SecretDetails(meta, versions)

    def add_version(self, actor: Principal, name: str, value: SecretStr | str) -> SecretVersion:
        """A new enabled version; it becomes `latest`."""
        with self._operation(actor, "add-version", name) as detail:
            created = self.backend.add_version(name, _checked_value(value))
            detail["version"] = created.version
        return created

    def disable_version(self, actor: Principal, name: str, version: int) -> SecretVersion:
        return self._set_state(actor, name, version, "disable")

    def enable_version(self, actor: Principal, name: str, version: int) -> SecretVersion:
        return self._set_state(actor, name, version, "enable")

    def destroy_version(self, actor: Principal, name: str, version: int) -> SecretVersion:
        """Erase a version's value for good; the version stays listed as DESTROYED."""
        return self._set_state(actor, name, version, "destroy")

    def _set_state(self, actor: Principal, name: str, version: int, action: VersionAction) -> SecretVersion:
        with self._operation(actor, action, name, version=version):
            if not isinstance(version, int) or version < 1:
                raise InvalidInput(f"{action} needs a version number, not {version!r}")
            return self.backend.set_version_state(name, version, action)

    def delete(self, actor: Principal, name: str, etag: str | None = None) -> None:
        """Delete a secret and all its versions; with `etag`, only if nobody changed it meanwhile."""
        with self._operation(actor, "delete", name):
            self.backend.delete_secret(name, etag)

    def update_labels(self, actor: Principal, name: str, labels: dict[str, str], etag: str) -> SecretMeta:
        """Replace the labels, guarded by the etag the caller read (a stale one is a `Conflict`)."""
        with self._operation(actor, "labels", name) as detail:
            if not etag:
                raise InvalidInput("an etag is required: describe the secret first and pass its etag")
            detail["labels"] = sorted(check_labels(labels))
            return self.backend.update_labels(name, labels, etag)

    # -- views --------------------------------------------------------------------------------------------

    def diff(self, actor: Principal, name: str, old: VersionRef, new: VersionRef = "latest", *,
             reveal: bool = False) -> SecretDiff:
        """Which keys or lines changed between two versions; values only with `reveal=True` (admin only)."""
        with self._operation(actor, "diff", name) as detail:
            old_version, old_data = self.backend.access_version(name, old)
            new_version, new_data = self.backend.access_version(name, new)
            result = diff_payloads(
                name,
                old_version, _text(name, old_version, old_data),
                new_version, _text(name, new_version, new_data),
                reveal=reveal,
            )
            detail.update(versions=[old_version, new_version], revealed=reveal,
                          changes=len(result.changes))
        return result

    def rotation_due(self, actor: Principal, *, within: timedelta = timedelta(days=7),
                     now: datetime | None = None) -> list[RotationStatus]:
        """Secrets with a rotation policy that are due within `within` (overdue ones first)."""
        now = now or datetime.now(UTC)
        with self._operation(actor, "rotation-due", minimum=Role.operator) as detail:
            statuses = [_rotation_status(meta, self.backend.list_versions(meta.name), now)
                        for meta in self._all(labels=None) if meta.rotation_period or meta.next_rotation_time]
            due = sorted((s for s in statuses if s.due_at <= now + within), key=lambda s: s.due_at)
            detail["count"] = len(due)
        return due

    def _all(self, labels: dict[str, str] | None) -> Iterator[SecretMeta]:
        token: str | None = None
        while True:
            page = self.backend.list_secrets(labels=labels, page_size=1000, page_token=token)
            yield from page.secrets
            if not (token := page.next_page_token):
                return

    def audit_entries(self, actor: Principal, *, secret: str | None = None,
                      limit: int = 200) -> list[audit.AuditEntry]:
        """The audit trail of the secrets area (of one secret when given), newest first; admin only."""
        with self._operation(actor, "audit", secret), connect(self.settings) as conn:
            return audit.entries(conn, area=AREA, target=secret, limit=limit)


def get_service(settings: Settings | None = None) -> SecretsService:
    """The service over the configured backend (`SECRETS_BACKEND`)."""
    return SecretsService(settings)


def _text(name: str, version: int, data: SecretBytes) -> SecretStr:
    try:
        return SecretStr(data.get_secret_value().decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidInput(f"secret {name!r} version {version} holds binary data, not UTF-8 text") from None


def _checked_value(value: SecretStr | str) -> SecretBytes:
    raw = (value.get_secret_value() if isinstance(value, SecretStr) else value).encode("utf-8")
    if not raw:
        raise InvalidInput("the secret value is empty")
    if len(raw) > MAX_VALUE_BYTES:
        raise InvalidInput(f"the secret value is {len(raw)} bytes: at most {MAX_VALUE_BYTES}")
    return SecretBytes(raw)


def _checked_spec(spec: SecretSpec) -> SecretSpec:
    """Validate a new secret's options the same way for both backends (Secret Manager's own rules)."""
    now = datetime.now(UTC)
    check_labels(spec.labels)
    if spec.ttl is not None and spec.expire_time is not None:
        raise InvalidInput("give either an expiry time or a TTL, not both")
    if spec.ttl is not None and spec.ttl <= timedelta(0):
        raise InvalidInput("the TTL must be positive")
    if spec.expire_time is not None and spec.expire_time <= now:
        raise InvalidInput("the expiry time must be in the future")
    if spec.rotation_period is not None and spec.rotation_period < MIN_ROTATION_PERIOD:
        raise InvalidInput("the rotation period must be at least 1 hour")
    if spec.rotation_period is not None and spec.next_rotation_time is None:
        spec = replace(spec, next_rotation_time=now + spec.rotation_period)
    if spec.next_rotation_time is not None and spec.next_rotation_time < now + MIN_ROTATION_LEAD:
        raise InvalidInput("the next rotation time must be at least 5 minutes in the future")
    return spec


def _rotation_status(meta: SecretMeta, versions: list[SecretVersion], now: datetime) -> RotationStatus:
    latest = next((v for v in versions if v.state == "ENABLED"), None)
    candidates = [t for t in (
        meta.next_rotation_time,
        latest.create_time + meta.rotation_period if latest and meta.rotation_period else None,
    ) if t is not None]
    due_at = min(candidates) if candidates else meta.create_time
    return RotationStatus(
        secret=meta.name,
        rotation_period=meta.rotation_period,
        next_rotation_time=meta.next_rotation_time,
        latest_version=latest.version if latest else None,
        latest_created=latest.create_time if latest else None,
        age=now - latest.create_time if latest else None,
        due_at=due_at,
        overdue=due_at <= now,
    )

