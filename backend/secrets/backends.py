"""Pick and cache the configured store (`SECRETS_BACKEND=local|gcp`) so each process opens it once."""

from __future__ import annotations

import hashlib
import threading

from backend.config import Settings
from backend.secrets.base import SecretsBackend

_lock = threading.Lock()
_open: dict[tuple[str, ...], SecretsBackend] = {}


def _identity(settings: Settings) -> tuple[str, ...]:
    key = settings.secrets_local_key.get_secret_value() if settings.secrets_local_key else ""
    return (
        settings.secrets_backend,
        settings.gcp_project_id or "",
        settings.secret_manager_endpoint or "",
        str(settings.secrets_local_path.resolve()),
        hashlib.sha256(key.encode()).hexdigest(),
    )


def backend_for(settings: Settings) -> SecretsBackend:
    """The store these settings name; the same object for the same settings."""
    identity = _identity(settings)
    with _lock:
        if identity not in _open:
            _open[identity] = _build(settings)
        return _open[identity]


def _build(settings: Settings) -> SecretsBackend:
    if settings.secrets_backend == "gcp":
        from backend.secrets.gcp import GcpSecretsBackend  # the Google client is heavy: load it only when used

        return GcpSecretsBackend.from_settings(settings)
    from backend.secrets.local import LocalSecretsBackend

    return LocalSecretsBackend(settings.secrets_local_path, settings.secrets_local_key)
