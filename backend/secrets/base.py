"""The one seam between the secrets service and a store: Secret Manager (`gcp`) or the encrypted file (`local`).

Both implementations keep the same semantics, so the service layer and its tests do not care which one runs:
- `latest` is the newest ENABLED version; a secret without one is `NotFound`.
- Accessing a DISABLED or DESTROYED version, or enabling/disabling a DESTROYED one, is `InvalidInput`.
- A duplicate name is `Conflict`; a stale etag on a guarded write is `Conflict`.
- Listing is ordered by name and paginated with an opaque token.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from pydantic import SecretBytes

from backend.secrets.models import SecretMeta, SecretPage, SecretSpec, SecretVersion, VersionAction, VersionRef


class SecretsBackend(ABC):
    kind: str

    @abstractmethod
    def list_secrets(
        self, *, labels: dict[str, str] | None = None, page_size: int = 100, page_token: str | None = None
    ) -> SecretPage:
        """Secrets whose labels include all of `labels`, ordered by name."""

    @abstractmethod
    def create_secret(self, name: str, spec: SecretSpec) -> SecretMeta: ...

    @abstractmethod
    def get_secret(self, name: str) -> SecretMeta: ...

    @abstractmethod
    def update_labels(self, name: str, labels: dict[str, str], etag: str) -> SecretMeta:
        """Replace the labels if `etag` is still the secret's etag; `Conflict` otherwise."""

    @abstractmethod
    def delete_secret(self, name: str, etag: str | None = None) -> None: ...

    @abstractmethod
    def add_version(self, name: str, data: SecretBytes) -> SecretVersion: ...

    @abstractmethod
    def list_versions(self, name: str) -> list[SecretVersion]:
        """All versions, newest first."""

    @abstractmethod
    def get_version(self, name: str, version: VersionRef) -> SecretVersion: ...

    @abstractmethod
    def access_version(self, name: str, version: VersionRef) -> tuple[int, SecretBytes]:
        """The version number `version` resolved to, and its value."""

    @abstractmethod
    def set_version_state(self, name: str, version: int, action: VersionAction) -> SecretVersion:
        """Enable, disable or destroy (irreversible: the value is erased) one version."""
