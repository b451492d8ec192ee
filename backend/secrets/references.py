"""`secret:NAME` / `secret:NAME#VERSION` in any text setting, resolved once when settings are loaded.

So `DATABASE_URL=secret:database-url` keeps the password out of env files. The secrets backend's own settings
cannot be references (they are needed to reach the backend). Resolution reads the store directly as the process
itself: it is logged (names and versions, never values) but not written to the audit table, because the
database URL may be one of the references being resolved.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import SecretStr

from backend.config import REFERENCE_PREFIX, Settings, references_in
from backend.errors import ConfigError, PlatformError
from backend.secrets.models import VersionRef, check_name, parse_version

log = logging.getLogger(__name__)
BACKEND_FIELDS = frozenset(
    {"secrets_backend", "gcp_project_id", "secret_manager_endpoint", "secrets_local_key", "secrets_local_key_file",
     "secrets_local_path"}
)


def parse_reference(value: str) -> tuple[str, VersionRef]:
    """`secret:NAME[#VERSION]` into (name, version); `latest` when no version is given."""
    name, _, version = value.removeprefix(REFERENCE_PREFIX).partition("#")
    return check_name(name), parse_version(version) if version else "latest"


def resolve_references(settings: Settings) -> Settings:
    """Settings with every reference replaced by the secret's value (SecretStr fields stay SecretStr)."""
    references = references_in(settings)
    if not references:
        return settings
    if own := sorted(references.keys() & BACKEND_FIELDS):
        raise ConfigError(f"{own[0].upper()} cannot reference a secret: the secrets backend needs it to start")
    from backend.secrets.backends import backend_for  # only processes that use references pay for the import

    backend = backend_for(settings)
    updates: dict[str, Any] = {}
    for field, reference in references.items():
        try:
            name, version = parse_reference(reference)
            number, data = backend.access_version(name, version)
            text = data.get_secret_value().decode("utf-8")
        except (PlatformError, UnicodeDecodeError) as exc:
            detail = str(exc) if isinstance(exc, PlatformError) else "it is not UTF-8 text"
            raise ConfigError(f"{field.upper()}={reference} cannot be resolved: {detail}") from None
        updates[field] = SecretStr(text) if isinstance(getattr(settings, field), SecretStr) else text
        log.info("setting %s resolved from secret %s version %d (%s backend)", field.upper(), name, number,
                 backend.kind)
    return settings.model_copy(update=updates)
