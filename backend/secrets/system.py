"""Secrets the platform itself needs (signing keys, callback tokens): read once per process, created on first use.

Other areas call `get_or_create("rtmp-callback-token", lambda: secrets.token_urlsafe(32))` and never handle
storage, keys or audit themselves. Acts as the `system` principal, so every creation and read is audited.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pydantic import SecretStr

from backend.config import Settings, get_settings
from backend.errors import Conflict, NotFound
from backend.identity.principal import SYSTEM
from backend.secrets.models import SecretSpec
from backend.secrets.service import SecretsService

log = logging.getLogger(__name__)
SYSTEM_LABELS = {"managed-by": "system"}
_cache: dict[tuple[int, str], SecretStr] = {}
_lock = threading.Lock()


def get_or_create(name: str, generate: Callable[[], str], settings: Settings | None = None) -> str:
    """The value of system secret `name`; on first use anywhere, `generate()` makes it and it is stored."""
    service = SecretsService(settings or get_settings())
    key = (id(service.backend), name)
    with _lock:
        if key not in _cache:
            _cache[key] = _read_or_create(service, name, generate)
        return _cache[key].get_secret_value()


def _read_or_create(service: SecretsService, name: str, generate: Callable[[], str]) -> SecretStr:
    for _attempt in range(50):
        try:
            return service.reveal(SYSTEM, name).value
        except NotFound:
            pass
        try:
            service.create(SYSTEM, name, SecretSpec(labels=SYSTEM_LABELS), SecretStr(generate()))
            log.info("created system secret %s", name)
        except Conflict:
            time.sleep(0.1)  # another process is creating it: its first version appears in a moment
    raise Conflict(f"system secret {name!r} exists but has no enabled version: add one with "
                   f"`stream-platform secrets add-version {name}`")
