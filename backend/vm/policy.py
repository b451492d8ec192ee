"""The auto-shutdown policy: one pure function from (policy, state, clock, readings) to a decision.

Nothing here reads a clock or a sensor, so every rule is tested with a fake clock. The rules, in order:

1. A new boot starts afresh. A gap in watching longer than the poll tolerance (the agent was down, or the clock
   jumped back) restarts the idle clock: a restart never shortens a countdown.
2. Any `active` or `unknown` signal keeps the machine up and cancels a pending warning, unless the optional
   maximum age is reached (then the machine stops even when busy, still after a warning).
3. Otherwise the idle clock runs. The stop is due `idle_seconds` after it started, but never before the minimum
   uptime or the end of a snooze, and never inside a never-stop window.
4. A warning goes out `warn_seconds` before the stop and the stop never comes sooner than that after the warning.
5. A new agent process that finds a warning pending (it restarted mid-countdown) warns again: whoever was told may
   have been told by a process that died, so the stop moves to at least `warn_seconds` after the new warning.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backend.errors import InvalidInput
from backend.parsing import span_text
from backend.vm.signals.base import Reading

Kind = Literal["active", "idle", "held", "warning", "stop"]
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(
    r"\s*(?:(?P<days>[A-Za-z,\-*]+)\s+)?(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})(?:\s+(?P<tz>\S+))?\s*"
)
_BOOT_JITTER = timedelta(seconds=30)


@dataclass(frozen=True)
class Window:
    """A never-stop window such as `Mon-Fri 09:00-18:00 Europe/Berlin` (days and zone optional; may span midnight)."""

    text: str
    days: frozenset[int]
    start: time
    end: time
    zone: str = "UTC"

    @classmethod
    def parse(cls, text: str) -> Window:
        match = _WINDOW.fullmatch(text)
        if not match:
            raise InvalidInput(f"never-stop window {text!r}: expected e.g. 'Mon-Fri 09:00-18:00 Europe/Berlin'")
        try:
            ZoneInfo(match["tz"] or "UTC")
            start, end = time.fromisoformat(match["start"].zfill(5)), time.fromisoformat(match["end"].zfill(5))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidInput(f"never-stop window {text!r}: {exc}") from None
        if start == end:
            raise InvalidInput(f"never-stop window {text!r}: start and end are equal")
        return cls(text.strip(), _parse_days(match["days"], text), start, end, match["tz"] or "UTC")

    def contains(self, at: datetime) -> bool:
        local = at.astimezone(ZoneInfo(self.zone))
        day, now = local.weekday(), local.time()
        if self.start < self.end:
            return day in self.days and self.start <= now < self.end
        return (day in self.days and now >= self.start) or ((day - 1) % 7 in self.days and now < self.end)


def _parse_days(spec: str | None, text: str) -> frozenset[int]:
    if spec is None or spec in ("*", "daily"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in spec.lower().split(","):
        first, _, last = part.partition("-")
        if first[:3] not in _DAYS or (last and last[:3] not in _DAYS):
            raise InvalidInput(f"never-stop window {text!r}: unknown day in {spec!r} (use Mon..Sun)")
        a, b = _DAYS.index(first[:3]), _DAYS.index((last or first)[:3])
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    return frozenset(days)


@dataclass(frozen=True)
class Policy:
    idle_seconds: float = 1800
    warn_seconds: float = 300
    min_uptime_seconds: float = 900
    poll_seconds: float = 30
    max_age_seconds: float | None = None
    windows: tuple[Window, ...] = ()
    tolerance_seconds: float | None = None
    """Longest gap between evaluations that still continues a countdown; default three polls plus 10 s."""

    def __post_init__(self) -> None:
        for name in ("idle_seconds", "warn_seconds", "min_uptime_seconds"):
            if getattr(self, name) < 0:
                raise InvalidInput(f"{name} must be ≥ 0")
        if self.poll_seconds <= 0:
            raise InvalidInput("poll_seconds must be > 0")
        if self.max_age_seconds is not None and self.max_age_seconds <= 0:
            raise InvalidInput("max_age_seconds must be > 0")

    @property
    def tolerance(self) -> timedelta:
        seconds = self.tolerance_seconds if self.tolerance_seconds is not None else 3 * self.poll_seconds + 10
        return timedelta(seconds=seconds)


@dataclass
class Countdown:
    """What the agent remembers between polls (and across restarts, through the state store)."""

    boot_time: datetime | None = None
    idle_since: datetime | None = None
    warned_at: datetime | None = None
    stop_at: datetime | None = None
    snoozed_until: datetime | None = None
    last_stop_at: datetime | None = None
    last_evaluated_at: datetime | None = None

    def to_json(self) -> dict[str, str | None]:
        return {k: v.isoformat() if v else None for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Countdown:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: datetime.fromisoformat(v) if v else None for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Decision:
    at: datetime
    kind: Kind
    reasons: tuple[str, ...]
    state: Countdown
    readings: tuple[Reading, ...] = ()
    events: tuple[str, ...] = field(default=())

    @property
    def stop_at(self) -> datetime | None:
        return self.state.stop_at

    @property
    def idle_since(self) -> datetime | None:
        return self.state.idle_since


def _secs(seconds: float) -> str:
    return span_text(timedelta(seconds=seconds))


def _clock(at: datetime, now: datetime) -> str:
    """A time of day, with its date when that is not today's (a stop tomorrow must not read as one past)."""
    if at.utcoffset() != timedelta(0):
        return at.isoformat(timespec="seconds")
    return at.strftime("%H:%M:%S UTC" if at.date() == now.date() else "%Y-%m-%d %H:%M:%S UTC")


def _cancel_warning(state: Countdown, events: list[str]) -> None:
    if state.warned_at is not None:
        events.append("warning_cancelled")
    state.warned_at = state.stop_at = None


def decide(policy: Policy, state: Countdown, now: datetime, boot_time: datetime, readings: list[Reading], *,
           resumed: bool = False) -> Decision:
    """The decision for this poll and the state to remember; never mutates `state`. `resumed`: this is the first
    poll of a new agent process."""
    s, events, reasons = replace(state), [], []
    if s.boot_time is None:
        s.boot_time = boot_time
    elif abs(s.boot_time - boot_time) > _BOOT_JITTER:
        events.append("booted")
        s = Countdown(boot_time=boot_time)
    elif s.last_evaluated_at is not None and not timedelta(0) <= now - s.last_evaluated_at <= policy.tolerance:
        if s.idle_since is not None:
            events.append("idle_clock_restarted")
            reasons.append(f"not watched for {span_text(now - s.last_evaluated_at)}: idle clock restarted to be safe")
        s.idle_since = None
        _cancel_warning(s, events)
    s.last_evaluated_at = now
    uptime = now - boot_time
    aged = policy.max_age_seconds is not None and uptime >= timedelta(seconds=policy.max_age_seconds)
    blocking = [r for r in readings if r.blocks]

    def done(kind: Kind) -> Decision:
        return Decision(now, kind, tuple(reasons), s, tuple(readings), tuple(events))

    if blocking and not aged:
        s.idle_since = None
        _cancel_warning(s, events)
        reasons.extend(f"{r.signal} {r.state}: {r.evidence}" for r in blocking)
        return done("active")

    if s.idle_since is None:
        s.idle_since = now
    due = s.idle_since + timedelta(seconds=policy.idle_seconds)
    if aged:
        assert policy.max_age_seconds is not None
        aged_due = boot_time + timedelta(seconds=policy.max_age_seconds)
        if s.last_stop_at is not None:
            aged_due = max(aged_due, s.last_stop_at + timedelta(seconds=policy.idle_seconds))
        due = min(due, aged_due)
        reasons.append(f"maximum age reached: up {span_text(uptime)} (limit {_secs(policy.max_age_seconds)})")
        reasons.extend(f"{r.signal} {r.state} (overridden by maximum age): {r.evidence}" for r in blocking)
    else:
        idle_for = span_text(now - s.idle_since)
        reasons.append(f"all signals idle or n/a for {idle_for} (threshold {_secs(policy.idle_seconds)})")
    idle_due, held = due, []
    earliest = boot_time + timedelta(seconds=policy.min_uptime_seconds)
    if earliest > due:
        due = earliest
        held.append(f"minimum uptime: up {span_text(uptime)}, stays up at least {_secs(policy.min_uptime_seconds)}")
    if s.snoozed_until is not None and s.snoozed_until > now:
        due = max(due, s.snoozed_until)
        held.append(f"snoozed until {_clock(s.snoozed_until, now)}")
    window = next((w for w in policy.windows if w.contains(now)), None)
    if window is not None:
        _cancel_warning(s, events)
        reasons.append(f"inside never-stop window {window.text}")
        return done("held")

    warn = timedelta(seconds=policy.warn_seconds)
    if s.warned_at is None:
        if now < due - warn:
            reasons.extend(held)
            reasons.append(f"warning at {_clock(due - warn, now)}, stop at {_clock(due, now)} if still idle")
            return done("held" if due > idle_due and idle_due - warn <= now else "idle")
        s.warned_at, s.stop_at = now, max(due, now + warn)
        events.append("warning_issued")
    else:
        assert s.stop_at is not None
        s.stop_at = max(s.stop_at, due)
        if resumed:
            s.warned_at, s.stop_at = now, max(s.stop_at, now + warn)
            events.append("warning_issued")
            reasons.append("the agent restarted during the countdown: warning again before any stop")
    reasons.extend(held)
    if now >= s.stop_at:
        reasons.append("stop due now")
        return done("stop")
    left = span_text(s.stop_at - now)
    reasons.append(f"stopping at {_clock(s.stop_at, now)} (in {left}) unless activity resumes, snooze or skip")
    return done("warning")


def snooze(state: Countdown, now: datetime, seconds: float) -> Countdown:
    """Hold any stop for `seconds` beyond the current deadline (or now); a new warning precedes the later stop."""
    if seconds <= 0:
        raise InvalidInput("snooze seconds must be > 0")
    base = max(d for d in (now, state.stop_at, state.snoozed_until) if d is not None)
    return replace(state, snoozed_until=base + timedelta(seconds=seconds), warned_at=None, stop_at=None)


def skip(state: Countdown, now: datetime) -> Countdown:
    """Drop this countdown: a full idle period must pass again before the next warning."""
    return replace(state, idle_since=now, warned_at=None, stop_at=None, snoozed_until=None)


def after_stop(state: Countdown, now: datetime) -> Countdown:
    """After any stop attempt (done, dry run, aborted by a hook or failed) the next one needs a full idle period."""
    return replace(state, idle_since=now, warned_at=None, stop_at=None, snoozed_until=None, last_stop_at=now)
