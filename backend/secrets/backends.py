"""Pick and cache the configured store (`SECRETS_BACKEND=local|gcp`) so each process opens it once."""

from __future__ import annotations

import hashlib
import threading

from backend.config import Settings
from backend.secrets.base import SecretsBackend

_lock = threading.Lock()
_open: dict[tuple[str, ...], SecretsBackend] = {}


def _identity(settings: Settings) -> tuple[str, ...]:
    """What makes two settings the same store; a changed key file takes effect when the process restarts."""
    if settings.secrets_backend == "gcp":
        return ("gcp", settings.gcp_project_id or "", settings.secret_manager_endpoint or "")
    key = settings.secrets_local_key.get_secret_value() if settings.secrets_local_key else ""
    return (
        "local",
        str(settings.secrets_local_path.resolve()),
        str(settings.secrets_local_key_file or ""),
        hashlib.sha256(key.encode()).hexdigest(),
    )


def backend_for(settings: Settings) -> SecretsBackend:
    """The store these settings name; the same object for the same settings. A local store without a properly
    configured key is refused here, with a one-line `ConfigError`."""
    identity = _identity(settings)
    with _lock:
        if identity not in _open:
            _open[identity] = _build(settings)
        return _open[identity]


def _build(settings: Settings) -> SecretsBackend:
    if settings.secrets_backend == "gcp":
        from backend.secrets.gcp import GcpSecretsBackend  # the Google client is heavy: load it only when used

        return GcpSecretsBackend.from_settings(settings)
    from backend.secrets.local import LocalSecretsBackend, configured_key

    return LocalSecretsBackend(settings.secrets_local_path, configured_key(settings))
