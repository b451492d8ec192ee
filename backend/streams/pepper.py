"""The server pepper for stream-key hashes, and the hash itself.

Stream keys are 256-bit random tokens, so a fast keyed hash (HMAC-SHA256) is the right tool: argon2 would
throttle the publish callback without adding anything against guessing. The pepper means a leaked database
alone does not let anyone test candidate keys.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import secrets
import threading

from backend.config import ConfigError, Settings

PEPPER_SECRET_NAME = "rtmp-key-pepper"
MIN_PEPPER_LENGTH = 32

_lock = threading.Lock()
_cache: dict[tuple, bytes] = {}


def key_pepper(settings: Settings) -> bytes:
    """`STREAM_KEY_PEPPER` when set, else the system secret `rtmp-key-pepper`; read once per process."""
    explicit = settings.stream_key_pepper.get_secret_value() if settings.stream_key_pepper else None
    source = (explicit, settings.secrets_backend, str(settings.secrets_local_path), settings.gcp_project_id)
    with _lock:
        if source not in _cache:
            _cache[source] = _load(explicit, settings)
        return _cache[source]


def _load(explicit: str | None, settings: Settings) -> bytes:
    value = explicit if explicit is not None else _from_secrets_backend(settings)
    if len(value) < MIN_PEPPER_LENGTH:
        raise ConfigError(f"STREAM_KEY_PEPPER is too short: use at least {MIN_PEPPER_LENGTH} random characters")
    return value.encode()


def _from_secrets_backend(settings: Settings) -> str:
    try:
        system = importlib.import_module("backend.secrets.system")
    except ModuleNotFoundError as exc:
        if exc.name != "backend.secrets.system":
            raise
        raise ConfigError("STREAM_KEY_PEPPER is not set and the secrets backend has no system secrets") from None
    return system.get_or_create(PEPPER_SECRET_NAME, lambda: secrets.token_urlsafe(48), settings)


def hash_key(pepper: bytes, key: str) -> bytes:
    """HMAC-SHA256(pepper, key): what `stream_keys.key_hash` holds and what lookups use."""
    return hmac.new(pepper, key.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()
