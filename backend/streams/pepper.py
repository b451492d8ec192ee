"""The streams area's server secrets: the pepper for stream-key hashes (and the hash itself), and the callback token.

Stream keys are 256-bit random tokens, so a fast keyed hash (HMAC-SHA256) is the right tool: argon2 would
throttle the publish callback without adding anything against guessing. The pepper means a leaked database
alone does not let anyone test candidate keys.

The callback token is the secret nginx-rtmp proves itself with: `streams nginx-config` writes it into the callback
URLs, and the callbacks refuse any request without it (a source address alone can be shared by every container,
VM or VPN client that reaches the API).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections.abc import Callable

from pydantic import SecretStr

from backend.config import Settings
from backend.errors import ConfigError
from backend.secrets import system

PEPPER_SECRET_NAME = "rtmp-key-pepper"
CALLBACK_TOKEN_SECRET_NAME = "rtmp-callback-token"
MIN_SECRET_LENGTH = 32  # for the pepper and the token alike
# Characters that need no escaping in a URL query or an nginx config argument: the token rides in both.
_CALLBACK_TOKEN = re.compile(rf"[A-Za-z0-9._~-]{{{MIN_SECRET_LENGTH},256}}")

_lock = threading.Lock()
_cache: dict[tuple, str] = {}


def key_pepper(settings: Settings) -> bytes:
    """`STREAM_KEY_PEPPER` when set, else the system secret `rtmp-key-pepper`; read once per process."""
    pepper = _server_secret(settings, settings.stream_key_pepper, PEPPER_SECRET_NAME, lambda: secrets.token_urlsafe(48))
    if len(pepper) < MIN_SECRET_LENGTH:
        raise ConfigError(f"STREAM_KEY_PEPPER is too short: use at least {MIN_SECRET_LENGTH} random characters")
    return pepper.encode()


def callback_token(settings: Settings) -> str:
    """`STREAMS_CALLBACK_TOKEN` when set, else the system secret `rtmp-callback-token`; read once per process."""
    token = _server_secret(settings, settings.streams_callback_token, CALLBACK_TOKEN_SECRET_NAME,
                           lambda: secrets.token_urlsafe(32))
    if len(token) < MIN_SECRET_LENGTH:
        raise ConfigError(f"STREAMS_CALLBACK_TOKEN is too short: use at least {MIN_SECRET_LENGTH} random characters")
    if not valid_callback_token(token):
        raise ConfigError("STREAMS_CALLBACK_TOKEN may hold only letters, digits, '-', '_', '.' and '~' (at most 256): "
                          "it is written into nginx's callback URLs")
    return token


def valid_callback_token(token: str) -> bool:
    """Whether `token` can go into a callback URL and an nginx config as it is."""
    return _CALLBACK_TOKEN.fullmatch(token) is not None


def _server_secret(settings: Settings, explicit: SecretStr | None, name: str, generate: Callable[[], str]) -> str:
    """The explicit setting, else system secret `name` (made by `generate()` on first use); read once per process."""
    value = explicit.get_secret_value() if explicit is not None else None
    source = (name, value, settings.secrets_backend, str(settings.secrets_local_path), settings.gcp_project_id)
    with _lock:
        if source not in _cache:
            _cache[source] = value if value is not None else system.get_or_create(name, generate, settings)
        return _cache[source]


def hash_key(pepper: bytes, key: str) -> bytes:
    """HMAC-SHA256(pepper, key): what `stream_keys.key_hash` holds and what lookups use."""
    return hmac.new(pepper, key.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()
