"""Settings with `secret:NAME[#VERSION]` references resolved: the one module that knows the settings and the
secrets store.

`backend.config` sits below everything (the secrets store's own modules import it), so it cannot call the store;
this module sits above both. Every entry point calls `install()` first (the CLI, the API factory, the console, the
test session), after which `get_settings()` anywhere in the process returns resolved settings. A process that did
not install it refuses a reference with a clear error rather than use `secret:...` as a value.
"""

from __future__ import annotations

from backend.config import Settings, read_settings, use_resolver
from backend.secrets.references import resolve_references


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and `secrets.env`, then `overrides`, with references resolved."""
    return resolve_references(read_settings(**overrides))


def install() -> None:
    """Make `backend.config.get_settings()` resolve references in this process (idempotent)."""
    use_resolver(resolve_references)
