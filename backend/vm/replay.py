"""Policy replay (what-if): the pure policy run over a VM's stored evaluations, the history being the clock.

Each stored evaluation is a sample: when it was taken, which boot it belongs to, whether any signal blocked a stop
(active or unknown) and whether a stream was live or a GPU busy. The replay hands the samples to `policy.decide` in
order, in UTC, and models what a stop would have changed:

- a replayed stop keeps the VM off until the history next shows it was needed (the next blocking sample of the
  same boot: someone would have started it then) or, if nothing needed it, until the last sample of that boot
  (after which the VM really was off, or the range ends). That span, time the VM really ran, is the saving;
- a replayed stop "regrets" when a stream was live or a GPU busy in the hour of history after it (same boot);
- after a replayed stop the VM is taken as booted afresh when it was needed, so minimum uptime counts again.

The history only holds what the real agent saw: a replay cannot know what would have happened on a VM the real
policy had stopped, so that time counts for neither policy, and a replay of the current policy over its own
history of real stops saves about nothing more: it is the baseline the what-if is compared with.

A month of 10 s evaluations is 259,200 samples per VM. They load as packed arrays (`load_history`) and the replay
steps over runs of samples whose decisions would change nothing (`replay_history`); `replay_reference` is the same
replay one row and one decision at a time, which this one is tested equal to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg.rows import tuple_row

from backend.vm.policy import Countdown, Policy, Window, decide
from backend.vm.signals.base import Reading

REGRET_LOOKAHEAD = timedelta(hours=1)
BLOCKING = [Reading("history", "active", "a recorded signal was active or unknown")]


@dataclass(frozen=True)
class ReplayStop:
    """A stop the replayed policy would have made, how long the VM would have stayed off, and whether it hurt."""

    at: datetime
    until: datetime
    regret: bool

    @property
    def hours(self) -> float:
        return (self.until - self.at).total_seconds() / 3600


@dataclass(frozen=True)
class PolicyChanges:
    """The what-if: policy settings that differ from the current ones (None keeps the current value)."""

    idle_seconds: float | None = None
    warn_seconds: float | None = None
    min_uptime_seconds: float | None = None
    poll_seconds: float | None = None
    max_age_seconds: float | None = None
    never_stop: tuple[str, ...] | None = None

    def apply(self, policy: Policy) -> Policy:
        changed = {k: v for k, v in vars(self).items() if v is not None and k != "never_stop"}
        if self.never_stop is not None:
            changed["windows"] = tuple(Window.parse(text) for text in self.never_stop)
        return replace(policy, **changed)


_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
"""PostgreSQL's timestamp epoch: `timestamptz_send` gives microseconds since it."""
_US = timedelta(microseconds=1)


def _moment(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))


def _us(at: datetime) -> int:
    return (at - _EPOCH) // _US


class History:
    """One host's evaluations in time order, as arrays: when each was taken (µs since 2000, UTC), whether a signal
    blocked a stop (active or unknown), whether a stream was live or a GPU busy, and the boot each belongs to (the
    latest recorded boot at or before it; the first evaluation's time before any).

    The index arrays answer "the next sample from i on that blocks / is idle / is busy / starts another boot" and
    "the first sample at or after a moment" by binary search, which is all a replay needs to step over a run.
    """

    def __init__(self, at: np.ndarray, blocks: np.ndarray, busy: np.ndarray, boots: Sequence[datetime]) -> None:
        self.at, self.blocks, self.busy = at, blocks, busy
        self.n = len(at)
        # with no boot recorded, one after every sample: all belong to the first sample's time, as "boot"
        recorded = np.array([_us(b) for b in sorted(boots)] or [np.iinfo(np.int64).max], dtype=np.int64)
        latest = np.searchsorted(recorded, at, side="right") - 1
        self.boot = np.where(latest >= 0, recorded[np.maximum(latest, 0)], at[0] if self.n else 0)
        self._blocking, self._idle = np.flatnonzero(blocks), np.flatnonzero(~blocks)
        self._busy = np.flatnonzero(busy)
        self._boot_starts = np.flatnonzero(np.diff(self.boot)) + 1

    def gaps_over(self, tolerance: timedelta) -> np.ndarray:
        """The samples taken longer than `tolerance` after the previous one."""
        return np.flatnonzero(np.diff(self.at) > tolerance // _US) + 1

    def first_at(self, moment: datetime, lo: int) -> int:
        """The first sample from `lo` on taken at or after `moment`."""
        return max(lo, int(np.searchsorted(self.at, _us(moment), side="left")))

    def moment(self, i: int) -> datetime:
        return _moment(self.at[i])

    def boot_of(self, i: int) -> datetime:
        return _moment(self.boot[i])

    def boot_end(self, i: int) -> int:
        """The index just past the last sample of sample `i`'s boot."""
        return _next(self._boot_starts, i + 1, self.n)

    def next_blocking(self, i: int) -> int:
        return _next(self._blocking, i, self.n)

    def next_idle(self, i: int) -> int:
        return _next(self._idle, i, self.n)

    def next_busy(self, i: int) -> int:
        return _next(self._busy, i, self.n)


def _next(indices: np.ndarray, i: int, default: int) -> int:
    """The first of the sorted `indices` that is ≥ i, else `default`."""
    k = int(np.searchsorted(indices, i, side="left"))
    return int(indices[k]) if k < len(indices) else default


def replay_history(policy: Policy, history: History) -> list[ReplayStop]:
    """The stops `policy` would have made over one host's history (see the module docstring for what a stop saves).

    Equal, stop for stop, to handing every sample to `policy.decide` in order (`replay_reference.replay_host`):
    the samples it steps over are those whose decision provably changes nothing but the watch clock
    (`_Replay.quiet_until`), so `decide` stays the one source of the policy's rules and a month of 10 s samples
    costs a few hundred decisions.
    """
    return _Replay(policy, history).run()


class _Replay:
    def __init__(self, policy: Policy, history: History) -> None:
        self.policy, self.h = policy, history
        self.gaps = history.gaps_over(policy.tolerance)

    def run(self) -> list[ReplayStop]:
        h, stops, state, i = self.h, [], Countdown(), 0
        restarted: tuple[int, datetime] | None = None  # (boot end, simulated boot) after a replayed stop
        while i < h.n:
            end = h.boot_end(i)
            boot = restarted[1] if restarted is not None and restarted[0] == end else h.boot_of(i)
            decision = decide(self.policy, state, h.moment(i), boot, BLOCKING if h.blocks[i] else [])
            state = decision.state
            if decision.kind == "stop":
                stop, i = self.stopped(i, end)
                stops.append(stop)
                restarted = (end, h.moment(i)) if i < end else None
                state = Countdown()
                continue
            i = self.quiet_until(state, i + 1, end, boot)
        return stops

    def quiet_until(self, state: Countdown, i: int, end: int, boot: datetime) -> int:
        """The first sample from `i` on (before `end`, the end of this boot) whose decision could change `state`
        other than its watch clock, which is moved over the samples in between.

        `state` is what `decide` left at sample i - 1 of the same boot, so no sample before `end` restarts it as a
        new boot. Before the maximum age (which makes even a busy VM stoppable) the samples stepped over are:
        - with no idle clock and no warning: the blocking ones (rule 2 has nothing to cancel);
        - with the idle clock running: idle ones that follow the previous one within the poll tolerance (rule 1
          does not restart the clock) and, while no warning is out, come before the warning is due or fall in a
          never-stop window (rule 3: nothing to cancel), or, with a warning out, come before the stop is due
          outside every window (rule 4).
        """
        h, p = self.h, self.policy
        limit = end
        if p.max_age_seconds is not None:
            limit = min(limit, h.first_at(boot + timedelta(seconds=p.max_age_seconds), i))
        if state.idle_since is None and state.warned_at is None:
            k = min(limit, h.next_idle(i))
        else:
            assert state.idle_since is not None
            limit = min(limit, h.next_blocking(i), _next(self.gaps, i, h.n))
            if state.warned_at is None:
                due = max(state.idle_since + timedelta(seconds=p.idle_seconds),
                          boot + timedelta(seconds=p.min_uptime_seconds))  # as `decide` computes it, never aged here
                k = self.first_in_window(min(limit, h.first_at(due - timedelta(seconds=p.warn_seconds), i)), limit,
                                         inside=False)
            else:
                assert state.stop_at is not None
                k = self.first_in_window(i, min(limit, h.first_at(state.stop_at, i)), inside=True)
        if k > i:
            state.last_evaluated_at = h.moment(k - 1)
        return k

    def first_in_window(self, i: int, j: int, *, inside: bool) -> int:
        """The first sample in [i, j) that is `inside` a never-stop window (or outside all of them), else j."""
        windows = self.policy.windows
        if not windows:
            return j if inside else i
        for k in range(i, j):
            at = self.h.moment(k)
            if any(w.contains(at) for w in windows) == inside:
                return k
        return j

    def stopped(self, i: int, end: int) -> tuple[ReplayStop, int]:
        """The stop at sample `i`: until the VM was needed again (and the index to resume at) and whether it hurt."""
        h = self.h
        j, at = min(h.next_blocking(i + 1), end), int(h.at[i])
        regret = False
        if j < end:
            until = int(h.at[j])
            k = h.next_busy(j)
            regret = k < end and int(h.at[k]) <= at + REGRET_LOOKAHEAD // _US
        else:
            until = int(h.at[end - 1])
        return ReplayStop(_moment(at), _moment(max(until, at)), regret), j


_HISTORY_SQL = """
SELECT string_agg(timestamptz_send(at), ''::bytea ORDER BY at, id),
       string_agg(boolsend(blocks), ''::bytea ORDER BY at, id),
       string_agg(boolsend(busy), ''::bytea ORDER BY at, id)
FROM vm_evaluations WHERE host = %s AND at >= %s AND at < %s
"""
"""One row per host: the evaluations' times and flags packed as binary arrays, read from the index alone (migration
0401), so a month of 10 s evaluations travels as ~2.6 MB in one value instead of 259,200 rows."""


def load_history(conn: psycopg.Connection, host: str, start: datetime, end: datetime) -> History:
    """A host's evaluations in [start, end), with the boots recorded for them."""
    with conn.cursor(row_factory=tuple_row, binary=True) as cur:
        at, blocks, busy = cur.execute(_HISTORY_SQL, (host, start, end)).fetchone() or (None, None, None)
    return History(np.frombuffer(at or b"", dtype=">i8").astype(np.int64), np.frombuffer(blocks or b"", dtype=bool),
                   np.frombuffer(busy or b"", dtype=bool), boot_times(conn, host, start, end))


def boot_times(conn: psycopg.Connection, host: str, start: datetime, end: datetime) -> list[datetime]:
    """The boots recorded in [start, end), and the last one before `start`, in time order."""
    with conn.cursor(row_factory=tuple_row) as cur:
        return [r[0] for r in cur.execute(
            """SELECT at FROM vm_events WHERE host = %(host)s AND kind = 'booted' AND at < %(end)s
                 AND at >= coalesce((SELECT max(at) FROM vm_events WHERE host = %(host)s AND kind = 'booted'
                                     AND at <= %(start)s), %(start)s)
               ORDER BY at""",
            {"host": host, "start": start, "end": end},
        )]


def replay_hosts(conn: psycopg.Connection, start: datetime, end: datetime, host: str | None = None) -> list[str]:
    """Hosts with evaluations in [start, end) (or just `host`), in name order: the hosts are walked one index probe
    each, where a plain DISTINCT would read every evaluation of the range."""
    with conn.cursor(row_factory=tuple_row) as cur:
        return [r[0] for r in cur.execute(
            """WITH RECURSIVE hosts AS (
                   SELECT min(host) AS host FROM vm_evaluations
                   UNION ALL
                   SELECT (SELECT min(host) FROM vm_evaluations WHERE host > hosts.host) FROM hosts
                   WHERE hosts.host IS NOT NULL)
               SELECT host FROM hosts
               WHERE host IS NOT NULL AND (%(host)s::text IS NULL OR host = %(host)s)
                 AND EXISTS (SELECT 1 FROM vm_evaluations e
                             WHERE e.host = hosts.host AND e.at >= %(start)s AND e.at < %(end)s)
               ORDER BY host""",
            {"host": host, "start": start, "end": end},
        )]


@dataclass(frozen=True)
class HostReplay:
    """One VM under one policy: the stops, the hours the VM would have been off, their price, and the regrets."""

    host: str
    evaluations: int
    stops: list[ReplayStop]
    stopped_hours: float
    saved_usd: float
    unpriced_gpu_hours: float

    @property
    def regret(self) -> int:
        return sum(s.regret for s in self.stops)


@dataclass(frozen=True)
class ReplayResult:
    """One policy over every replayed VM, with the totals."""

    policy: dict[str, Any]
    hosts: list[HostReplay]

    @property
    def stops(self) -> int:
        return sum(len(h.stops) for h in self.hosts)

    @property
    def stopped_hours(self) -> float:
        return sum(h.stopped_hours for h in self.hosts)

    @property
    def saved_usd(self) -> float:
        return sum(h.saved_usd for h in self.hosts)

    @property
    def regret(self) -> int:
        return sum(h.regret for h in self.hosts)

    def totals(self) -> dict[str, float]:
        return {"stops": self.stops, "stopped_hours": round(self.stopped_hours, 3),
                "saved_usd": round(self.saved_usd, 2), "regret": self.regret}


def describe(policy: Policy) -> dict[str, Any]:
    """The policy settings a replay ran with, as the report prints them."""
    return {"idle_seconds": policy.idle_seconds, "warn_seconds": policy.warn_seconds,
            "min_uptime_seconds": policy.min_uptime_seconds, "poll_seconds": policy.poll_seconds,
            "max_age_seconds": policy.max_age_seconds, "never_stop": [w.text for w in policy.windows]}
