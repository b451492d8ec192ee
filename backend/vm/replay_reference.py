"""The reference replay: one stored evaluation at a time, as `backend.vm.replay` first did it.

It is the plain definition the fast replay (`replay.load_history` + `replay.replay_history`) must equal, stop for
stop: tests/test_vm_replay.py checks that on randomized histories and bench/bench_replay.py measures both in one run.
Nothing in production calls it. The rules of what a replayed stop saves and regrets are in `backend.vm.replay`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import tuple_row

from backend.vm.policy import Countdown, Policy, decide
from backend.vm.replay import BLOCKING, REGRET_LOOKAHEAD, ReplayStop, boot_times


@dataclass(frozen=True, slots=True)
class Sample:
    """One stored evaluation, reduced to what replay reads."""

    at: datetime
    boot: datetime
    blocks: bool
    busy: bool


def run_ends(samples: Sequence[Sample]) -> list[int]:
    """For each sample, the index just past its run: the samples of the same boot that block (or not) alike."""
    ends, n = [0] * len(samples), len(samples)
    end = n
    for i in range(n - 1, -1, -1):
        if i + 1 < n and (samples[i].blocks != samples[i + 1].blocks or samples[i].boot != samples[i + 1].boot):
            end = i + 1
        ends[i] = end
    return ends


def replay_host(policy: Policy, samples: Sequence[Sample], ends: Sequence[int] | None = None) -> list[ReplayStop]:
    """The stops `policy` would have made over one host's samples (ordered by time); `ends` from `run_ends`.

    A run of blocking samples met on a countdown-free state of the same boot is decided at once when the policy has
    no maximum age (rule 2 of the policy: each only moves the watch clock, whatever the gaps); every other sample goes
    through `decide`.
    """
    ends = run_ends(samples) if ends is None else ends
    stops: list[ReplayStop] = []
    state, n, i = Countdown(), len(samples), 0
    restarted: tuple[datetime, datetime] | None = None  # (real boot, simulated boot) after a replayed stop
    while i < n:
        s = samples[i]
        boot = restarted[1] if restarted is not None and restarted[0] == s.boot else s.boot
        if (s.blocks and state.idle_since is None and state.warned_at is None and state.boot_time == boot
                and policy.max_age_seconds is None):
            i = ends[i]
            state.last_evaluated_at = samples[i - 1].at
            continue
        decision = decide(policy, state, s.at, boot, BLOCKING if s.blocks else [])
        state = decision.state
        if decision.kind != "stop":
            i += 1
            continue
        stop, i = stopped(samples, ends, i)
        stops.append(stop)
        restarted = (s.boot, samples[i].at) if i < n and samples[i].boot == s.boot else None
        state = Countdown()
    return stops


def stopped(samples: Sequence[Sample], ends: Sequence[int], i: int) -> tuple[ReplayStop, int]:
    """The stop at sample `i`: until the VM was needed again (and the index to resume at) and whether it hurt."""
    at, boot, n = samples[i].at, samples[i].boot, len(samples)
    horizon, regret, j = at + REGRET_LOOKAHEAD, False, i + 1
    while j < n and samples[j].boot == boot and not samples[j].blocks:
        j = ends[j]
    if j < n and samples[j].boot == boot:
        until = samples[j].at
        k = j
        while not regret and k < n and samples[k].boot == boot and samples[k].at <= horizon:
            regret = samples[k].busy
            k += 1
    else:
        until = samples[j - 1].at
    return ReplayStop(at, max(until, at), regret), j


_SAMPLES_SQL = """
SELECT at,
       signals @> '[{"state": "active"}]' OR signals @> '[{"state": "unknown"}]' AS blocks,
       signals @> '[{"signal": "rtmp", "state": "active"}]' OR signals @> '[{"signal": "gpu", "state": "active"}]'
           AS busy
FROM vm_evaluations WHERE host = %s AND at >= %s AND at < %s ORDER BY at, id
"""


def load_samples(conn: psycopg.Connection, host: str, start: datetime, end: datetime) -> list[Sample]:
    """A host's evaluations in [start, end) as samples, one row each; each belongs to the latest recorded boot before
    it (the first one seen when no boot was recorded)."""
    boots = boot_times(conn, host, start, end)
    with conn.cursor(row_factory=tuple_row, binary=True) as cur:
        rows = cur.execute(_SAMPLES_SQL, (host, start, end)).fetchall()
    samples: list[Sample] = []
    b, boot = 0, None
    for at, blocks, busy in rows:
        while b < len(boots) and boots[b] <= at:
            boot, b = boots[b], b + 1
        if boot is None:
            boot = at
        samples.append(Sample(at, boot, blocks, busy))
    return samples
