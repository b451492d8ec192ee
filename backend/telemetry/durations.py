"""Human durations on the command line and in fault specs: `30s`, `90m`, `24h`, `2d`, `1h30m`, or plain seconds."""

from __future__ import annotations

import re
from datetime import timedelta

from backend.errors import InvalidInput

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, *, what: str = "duration", allow_zero: bool = False) -> timedelta:
    """`1h30m` → 90 minutes. A bare number is seconds. Negative durations are refused, zero unless allowed."""
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        parts = _PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise InvalidInput(f"{what} {text!r} is not a duration like 30s, 90m, 24h or 1h30m") from None
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise InvalidInput(f"{what} must be positive, got {text!r}")
    return timedelta(seconds=seconds)

