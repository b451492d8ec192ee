"""The small grammars every area's CLI, API and forms share: durations (read and said) and `key=value` labels.

One grammar each, so `7d` means the same to a stream key's expiry, a secret's TTL and a CLI's `--since`. What a
label may contain is each area's own rule (`streams.keys.check_labels`, `secrets.models.check_labels`): parsing
only splits the pairs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta

from backend.errors import InvalidInput

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, *, what: str = "duration", allow_zero: bool = False,
                   bare_seconds: bool = False) -> timedelta:
    """`1h30m` → 90 minutes; units ms, s, m, h, d, w. A bare number is seconds only where `bare_seconds` allows
    it (a CLI interval); elsewhere `7` is ambiguous and refused. Negative durations are refused, zero unless
    allowed."""
    value = text.strip().lower()
    parts = _PART.findall(value)
    if bare_seconds and re.fullmatch(r"\d+(?:\.\d+)?", value):
        seconds = float(value)
    elif parts and "".join(n + u for n, u in parts) == value:
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        bare = ", or plain seconds" if bare_seconds else ""
        raise InvalidInput(f"invalid {what} {text!r}: use a number with ms, s, m, h, d or w, e.g. 30s, 90m, 7d or "
                           f"1h30m{bare}") from None
    if seconds == 0 and not allow_zero:
        raise InvalidInput(f"invalid {what} {text!r}: must be more than zero")
    return timedelta(seconds=seconds)


def parse_labels(pairs: Iterable[str], *, what: str = "label") -> dict[str, str]:
    """`key=value` pairs (repeated CLI options, comma-separated form fields) into a dict; blanks around each side
    are dropped. The caller checks what keys and values its area allows."""
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"invalid {what} {pair!r}: use key=value")
        labels[key.strip()] = value.strip()
    return labels


def span_text(delta: timedelta) -> str:
    """A duration the way an operator says it in a reason or a status line: `42 s`, `5 min`, `1.5 h`."""
    seconds = int(max(delta.total_seconds(), 0))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"
