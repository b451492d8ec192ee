"""Numbers, money, durations and times the way operators read them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def money(value: float | None, digits: int | None = None) -> str:
    """Cents only where they matter (below $1,000), so big numbers fit a metric tile."""
    if value is None:
        return "–"
    places = digits if digits is not None else (2 if abs(value) < 1000 else 0)
    return f"${value:,.{places}f}"


def number(value: float | None, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "–"
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}".rstrip() if unit and unit not in ("%", "°C") else f"{text}{unit}"


def duration(value: timedelta | float | None) -> str:
    """`2h 05m`, `3m 10s`, `45s`: short enough for a table cell."""
    if value is None:
        return "–"
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours:02d}h"
    if hours:
        return f"{sign}{hours}h {minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m {secs:02d}s"
    return f"{sign}{secs}s"


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return "never"
    return f"{duration((now or datetime.now(UTC)) - moment)} ago"


def when(moment: datetime | None) -> str:
    return "–" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def bitrate(bits_per_second: float | None) -> str:
    if bits_per_second is None:
        return "–"
    for unit, scale in (("Gb/s", 1e9), ("Mb/s", 1e6), ("kb/s", 1e3)):
        if bits_per_second >= scale:
            return f"{bits_per_second / scale:.1f} {unit}"
    return f"{bits_per_second:.0f} b/s"
