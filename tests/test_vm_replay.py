"""Policy replay (what-if): the pure policy over stored evaluations, through the service, the CLI and the API."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb
from typer.testing import CliRunner

from backend.api import tokens
from backend.api_app import create_app
from backend.cli import app
from backend.config import Settings
from backend.errors import InvalidInput, NotFound
from backend.identity.principal import SYSTEM, Principal, Role
from backend.vm import replay, service
from backend.vm.policy import Countdown, Policy, Window, decide
from backend.vm.replay import History, PolicyChanges, load_history, replay_history
from backend.vm.replay_reference import Sample, load_samples, replay_host, run_ends, stopped

VIEWER = Principal("vic", Role.viewer)
POLL = timedelta(seconds=10)
LIVE = [{"signal": "rtmp", "state": "active", "evidence": "1 live RTMP publisher(s)"},
        {"signal": "gpu", "state": "active", "evidence": "GPU 0 at 80 %"}]
IDLE = [{"signal": "rtmp", "state": "idle", "evidence": "no live RTMP publisher"},
        {"signal": "gpu", "state": "idle", "evidence": "GPU 0 at 0 %"}]
SSH = [{"signal": "ssh", "state": "active", "evidence": "1 session"}, *IDLE]
DAY = [(60, LIVE), (20, IDLE), (60, LIVE), (180, IDLE)]
"""Minutes of each state: a stream, a 20-minute pause, a second stream, then three idle hours."""


def _samples(pattern: list[tuple[int, list[dict[str, str]]]], start: datetime) -> list[tuple[datetime, list]]:
    rows, at = [], start
    for minutes, signals in pattern:
        for _ in range(int(timedelta(minutes=minutes) / POLL)):
            rows.append((at, signals))
            at += POLL
    return rows


def _store(db: psycopg.Connection, host: str, boot: datetime, pattern: list, gpus: int = 2) -> None:
    rows = _samples(pattern, boot + timedelta(minutes=1))
    with db.cursor() as cur:
        cur.executemany("INSERT INTO vm_evaluations (host, at, decision, signals) VALUES (%s, %s, 'active', %s)",
                        [(host, at, Jsonb(signals)) for at, signals in rows])
    db.execute("INSERT INTO vm_events (host, at, kind) VALUES (%s, %s, 'booted')", (host, boot))
    for i in range(gpus):
        db.execute("INSERT INTO gpus (gpu_uuid, host, gpu_index, model, first_seen, last_seen) "
                   "VALUES (%s, %s, %s, 'Replay Test GPU', %s, %s)", (f"GPU-{host}-{i}", host, i, boot, boot))


@pytest.fixture
def history(settings: Settings, db: psycopg.Connection) -> Iterator[datetime]:
    """Two VMs over the last 6 h: `gpu-a` streams twice with a pause, `gpu-b` streams all the time. $1/GPU-hour."""
    boot = (datetime.now(UTC) - timedelta(hours=6)).replace(microsecond=0)
    _store(db, "gpu-a", boot, DAY)
    _store(db, "gpu-b", boot, [(320, LIVE)])
    db.execute("INSERT INTO gpu_prices (gpu_model, pricing_kind, usd_per_gpu_hour, effective_from, updated_by) "
               "VALUES ('Replay Test GPU', 'on_demand', 1.00, '2020-01-01', 'test')")
    yield boot + timedelta(minutes=1)


def test_default_policy_never_regrets_and_a_stricter_one_does(settings: Settings, history: datetime) -> None:
    result = service.replay_policy(VIEWER, timedelta(hours=7), PolicyChanges(idle_seconds=600), settings=settings)
    current, candidate = ({h.host: h for h in r.hosts} for r in (result.current, result.candidate))
    assert current["gpu-b"].stops == candidate["gpu-b"].stops == []

    (stop,) = current["gpu-a"].stops  # 30 min idle + no stop in the 20-minute pause: one stop, after the last stream
    assert (stop.at - history, stop.regret) == (timedelta(minutes=170), False)
    assert stop.until == history + timedelta(minutes=320) - POLL  # off until the history ends
    assert result.current.regret == 0

    pause, last = candidate["gpu-a"].stops  # 10 min idle: stops in the pause, while the second stream was coming
    assert (pause.at - history, pause.until - history, pause.regret) == (
        timedelta(minutes=70), timedelta(minutes=80), True)
    assert (last.at - history, last.regret) == (timedelta(minutes=150), False)
    assert result.candidate.regret == 1 and result.candidate.stops == 2
    assert candidate["gpu-a"].saved_usd == pytest.approx(2 * candidate["gpu-a"].stopped_hours)
    assert candidate["gpu-a"].stopped_hours == pytest.approx((10 + 170 - 10 / 60) / 60)
    assert result.difference()["stops"] == 1 and result.difference()["regret"] == 1
    assert result.difference()["saved_usd"] == pytest.approx(2 * (10 + 20) / 60, abs=0.01)  # the pause + 20 min sooner


def test_never_stop_window_and_unknown_ssh_hold_the_replayed_stop(settings: Settings, db: psycopg.Connection) -> None:
    boot = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
    _store(db, "ssh-host", boot, [(120, SSH)], gpus=0)
    all_day = PolicyChanges(idle_seconds=60, min_uptime_seconds=0, never_stop=("00:00-23:59",))
    result = service.replay_policy(VIEWER, timedelta(hours=4), all_day, "ssh-host", settings=settings)
    assert result.candidate.stops == result.current.stops == 0
    with pytest.raises(NotFound, match="no auto-shutdown evaluations of elsewhere"):
        service.replay_policy(VIEWER, timedelta(hours=4), host="elsewhere", settings=settings)
    with pytest.raises(InvalidInput, match="between 1 s and 92 days"):
        service.replay_policy(VIEWER, timedelta(days=400), settings=settings)


def test_the_inline_active_step_decides_like_the_policy() -> None:
    """The reference replay decides blocking samples on a quiet countdown inline, the fast replay steps over runs;
    both agree with a replay deciding every sample."""
    boot = datetime(2026, 11, 2, 8, tzinfo=UTC)
    pattern = [(30, LIVE), (7, IDLE), (45, LIVE), (3, IDLE), (20, LIVE), (50, IDLE), (10, LIVE), (40, IDLE)]
    samples = [Sample(at, boot, signals is LIVE, signals is LIVE) for at, signals in _samples(pattern, boot)]
    gap, reboot = samples[400].at, samples[700].at  # the agent away 5 min in a stream; a reboot in the next one
    samples = [s if s.at < gap else Sample(s.at + timedelta(minutes=5), s.boot, s.blocks, s.busy) for s in samples]
    samples = [s if s.at < reboot else Sample(s.at, reboot, s.blocks, s.busy) for s in samples]
    history = _history(samples, [boot, reboot])
    for policy in (Policy(), Policy(idle_seconds=240, warn_seconds=60, min_uptime_seconds=0),
                   Policy(idle_seconds=60, max_age_seconds=3600),
                   Policy(idle_seconds=240, warn_seconds=60, windows=(Window.parse("08:50-09:05"),))):
        expected = _every_sample(policy, samples)
        assert expected and replay_host(policy, samples) == expected, policy
        assert replay_history(policy, history) == expected, policy


def _history(samples: list[Sample], boots: list[datetime]) -> History:
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    at = np.array([(s.at - epoch) // timedelta(microseconds=1) for s in samples], dtype=np.int64)
    return History(at, np.array([s.blocks for s in samples]), np.array([s.busy for s in samples]), boots)


def _every_sample(policy: Policy, samples: list[Sample]) -> list[replay.ReplayStop]:
    """The definition: `decide` on every sample, nothing inline."""
    stops, state, i, restarted = [], Countdown(), 0, {}
    while i < len(samples):
        s = samples[i]
        decision = decide(policy, state, s.at, restarted.get(s.boot, s.boot), replay.BLOCKING if s.blocks else [])
        state, i = decision.state, i + 1
        if decision.kind == "stop":
            stop, i = stopped(samples, run_ends(samples), i - 1)
            stops.append(stop)
            state, restarted = Countdown(), {s.boot: samples[i].at} if i < len(samples) else {}
    return stops


def _signals(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"signal": signal, "state": state, "evidence": "random history"} for signal, state in pairs]


KINDS = {  # what the agent may have recorded: blocking and busy, blocking only, idle, nothing applicable
    "live": _signals(("rtmp", "active"), ("gpu", "active")),
    "stream": _signals(("rtmp", "active"), ("gpu", "idle")),
    "gpu": _signals(("rtmp", "idle"), ("gpu", "active"), ("cpu", "idle")),
    "ssh": _signals(("ssh", "active"), ("rtmp", "idle"), ("gpu", "idle")),
    "unknown": _signals(("rtmp", "idle"), ("gpu", "unknown")),
    "scheduled": _signals(("schedule", "active"), ("rtmp", "idle")),
    "idle": _signals(("rtmp", "idle"), ("gpu", "idle"), ("ssh", "n/a")),
    "n/a": [],
}
RANDOM_POLICIES = [
    Policy(),
    Policy(idle_seconds=300, warn_seconds=60, min_uptime_seconds=0),
    Policy(idle_seconds=120, warn_seconds=0, min_uptime_seconds=600, tolerance_seconds=10.2),
    Policy(idle_seconds=0, warn_seconds=30, min_uptime_seconds=0),
    Policy(idle_seconds=600, warn_seconds=120, max_age_seconds=4 * 3600),
    Policy(idle_seconds=300, warn_seconds=60, min_uptime_seconds=0, windows=tuple(Window.parse(w) for w in (
        "09:00-17:00 Europe/Berlin", "Sat,Sun 22:00-02:30 America/New_York", "Mon-Fri 00:30-00:45"))),
    Policy(idle_seconds=240, warn_seconds=90, min_uptime_seconds=300, poll_seconds=5,
           windows=(Window.parse("01:00-01:20 Asia/Kolkata"),)),
    Policy(idle_seconds=300, warn_seconds=900, min_uptime_seconds=0,  # windows opening while a warning is out
           windows=tuple(Window.parse(f"{h:02d}:20-{h:02d}:27 Europe/Berlin") for h in range(24))),
]


def _random_history(db: psycopg.Connection, host: str, rng: random.Random, start: datetime, hours: float) -> None:
    """A host's evaluations over `hours` from `start`: phases of every kind (some only 1-3 samples long: flapping),
    10 s polls (with jitter, or exact so that deadlines fall on samples), the agent away now and then, duplicate
    times, any decision, and boots recorded at, between and before samples (some within the policy's 30 s boot
    jitter of each other)."""
    at, end, rows, jitter = start, start + timedelta(hours=hours), [], rng.choice([0, 0.3])
    boots = [start - timedelta(minutes=rng.uniform(1, 90))]
    while at < end:
        kind = rng.choices(list(KINDS), weights=[3, 1, 1, 1, 1, 1, 6, 1])[0]
        for _ in range(rng.choice([1, 2, 3, rng.randint(4, 400)])):
            rows.append((host, at, rng.choice(["active", "idle", "held", "warning", "stop"]), json.dumps(KINDS[kind])))
            step = rng.random()
            at += (timedelta(0) if step < 0.002 else timedelta(minutes=rng.randint(1, 20)) if step < 0.006
                   else timedelta(seconds=10 + rng.uniform(-jitter, jitter)))
        if rng.random() < 0.06:
            boots.append(at - timedelta(seconds=rng.choice([0, 5, 45, 200])))
            if rng.random() < 0.3:
                boots.append(boots[-1] + timedelta(seconds=rng.uniform(1, 25)))
    with db.cursor().copy("COPY vm_evaluations (host, at, decision, signals) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    with db.cursor() as cur:
        cur.executemany("INSERT INTO vm_events (host, at, kind) VALUES (%s, %s, 'booted')", [(host, b) for b in boots])


def test_the_fast_replay_equals_the_reference_on_random_histories(db: psycopg.Connection) -> None:
    """Loaded as packed arrays and stepped over, or one row and one decision at a time: the same stops, to the
    microsecond, with the same regrets, for every policy over randomized histories (across a DST change)."""
    start = datetime(2026, 10, 24, 18, tzinfo=UTC)
    hosts = [f"rnd-{seed}" for seed in range(6)]
    for seed, host in enumerate(hosts):
        _random_history(db, host, random.Random(seed), start, 30)
    since, until = start + timedelta(hours=1), start + timedelta(hours=29)
    stops, regrets, held_by_a_window = [0] * len(RANDOM_POLICIES), 0, 0
    for host in hosts:
        history, samples = load_history(db, host, since, until), load_samples(db, host, since, until)
        assert history.n == len(samples) > 5000
        assert [(s.blocks, s.busy) for s in samples] == list(zip(history.blocks.tolist(), history.busy.tolist(),
                                                                  strict=True))
        for p, policy in enumerate(RANDOM_POLICIES):
            fast, reference = replay_history(policy, history), replay_host(policy, samples)
            assert fast == reference, (host, policy)
            stops[p] += len(fast)
            regrets += sum(s.regret for s in fast)
        windowed = RANDOM_POLICIES[5]
        held_by_a_window += replay_history(replace(windowed, windows=()), history) != replay_history(windowed, history)
    assert min(stops) >= 5 and regrets >= 20 and held_by_a_window >= 3, (stops, regrets, held_by_a_window)


def test_cli_replay_json_and_table(history: datetime) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["autoshutdown", "replay", "--since", "7h", "--threshold", "10m", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["current"]["totals"]["regret"] == 0 and out["candidate"]["totals"]["regret"] == 1
    assert out["candidate"]["policy"]["idle_seconds"] == 600 and out["current"]["policy"]["idle_seconds"] == 1800
    assert [h["host"] for h in out["candidate"]["hosts"]] == ["gpu-a", "gpu-b"]

    table = runner.invoke(app, ["autoshutdown", "replay", "--since", "7h", "--threshold", "10m", "--stops"])
    assert table.exit_code == 0, table.output
    assert "1 → 2" in table.output and "regret" in table.output

    bad = runner.invoke(app, ["autoshutdown", "replay", "--threshold", "soon"])
    assert bad.exit_code == 2 and "invalid duration 'soon'" in bad.output


def test_api_replay_for_viewers(settings: Settings, db: psycopg.Connection, history: datetime) -> None:
    viewer = f"Bearer {tokens.create_token(db, SYSTEM, 'replay-viewer', Role.viewer).value}"
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/v1/autoshutdown/replay").status_code == 401
        response = client.get("/api/v1/autoshutdown/replay", params={"since": "7h", "threshold": "10m"},
                              headers={"Authorization": viewer})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["difference"]["stops"] == 1 and body["current"]["totals"]["regret"] == 0
        bad = client.get("/api/v1/autoshutdown/replay", params={"since": "forever"}, headers={"Authorization": viewer})
        assert bad.status_code == 400 and "invalid since 'forever'" in bad.text
