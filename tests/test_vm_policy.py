"""The auto-shutdown policy with a fake clock: no sleeping, every rule exercised directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backend.errors import InvalidInput
from backend.vm.policy import Countdown, Decision, Policy, Window, after_stop, decide, skip, snooze
from backend.vm.signals import Reading

BOOT = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # a Monday
IDLE = [Reading("cpu", "idle", "CPU 1% busy"), Reading("gpu", "n/a", "no GPU")]
LIVE = [Reading("rtmp", "active", "1 live RTMP publisher(s): live/cam1 (30 s)"), Reading("cpu", "idle", "CPU 1%")]
DOUBT = [Reading("rtmp", "unknown", "nginx /stat did not answer"), Reading("cpu", "idle", "CPU 1%")]
POLICY = Policy(idle_seconds=600, warn_seconds=120, min_uptime_seconds=0, poll_seconds=30)


class Clock:
    """Polls the policy like the agent does, every `poll_seconds`, carrying the state along."""

    def __init__(self, policy: Policy = POLICY, start: datetime = BOOT + timedelta(hours=1)) -> None:
        self.policy, self.now, self.state = policy, start, Countdown()
        self.decisions: list[Decision] = []

    def poll(self, readings: list[Reading] = IDLE, seconds: float | None = None) -> Decision:
        decision = decide(self.policy, self.state, self.now, BOOT, readings)
        self.state = decision.state
        self.decisions.append(decision)
        self.now += timedelta(seconds=self.policy.poll_seconds if seconds is None else seconds)
        return decision

    def until(self, kind: str, readings: list[Reading] = IDLE, limit: int = 1000) -> Decision:
        for _ in range(limit):
            decision = self.poll(readings)
            if decision.kind == kind:
                return decision
        raise AssertionError(f"never reached {kind}")


def test_idle_threshold_warns_then_stops_at_the_announced_time() -> None:
    clock = Clock()
    first = clock.poll()
    assert first.kind == "idle" and first.idle_since == first.at
    warning = clock.until("warning")
    assert "warning_issued" in warning.events
    assert warning.at - first.at == timedelta(seconds=600 - 120)
    assert warning.stop_at == first.at + timedelta(seconds=600)
    stop = clock.until("stop")
    assert stop.at == warning.stop_at
    assert [d.kind for d in clock.decisions].count("warning") == 4


def test_activity_resets_the_idle_clock_and_cancels_the_warning() -> None:
    clock = Clock()
    clock.until("warning")
    resumed = clock.poll(LIVE)
    assert resumed.kind == "active" and "warning_cancelled" in resumed.events
    assert resumed.idle_since is None and resumed.stop_at is None
    assert any("live/cam1" in r for r in resumed.reasons)
    again = clock.poll()
    assert again.kind == "idle" and again.idle_since == again.at


def test_unknown_signal_blocks_shutdown_forever() -> None:
    clock = Clock()
    decisions = [clock.poll(DOUBT) for _ in range(200)]
    assert {d.kind for d in decisions} == {"active"}
    assert "rtmp unknown: nginx /stat did not answer" in decisions[-1].reasons


def test_not_applicable_signals_do_not_block() -> None:
    clock = Clock()
    only_na = [Reading("gpu", "n/a", "no GPU"), Reading("rtmp", "n/a", "nginx not configured")]
    assert clock.until("stop", only_na).kind == "stop"


def test_snooze_pushes_the_stop_and_warns_again_before_it() -> None:
    clock = Clock()
    warning = clock.until("warning")
    clock.state = snooze(clock.state, clock.now, 3600)
    assert clock.state.snoozed_until == warning.stop_at + timedelta(seconds=3600)
    held = clock.poll()
    assert held.kind == "held" and any("snoozed until" in r for r in held.reasons)
    second_warning = clock.until("warning")
    assert second_warning.stop_at == warning.stop_at + timedelta(seconds=3600)
    assert second_warning.at >= second_warning.stop_at - timedelta(seconds=120)
    assert clock.until("stop").at == second_warning.stop_at


def test_skip_drops_this_countdown_and_needs_a_full_idle_period() -> None:
    clock = Clock()
    clock.until("warning")
    skipped_at = clock.now
    clock.state = skip(clock.state, skipped_at)
    assert clock.poll().kind == "idle"
    stop = clock.until("stop")
    assert stop.at - skipped_at >= timedelta(seconds=600)


def test_minimum_uptime_holds_an_idle_fresh_machine() -> None:
    policy = Policy(idle_seconds=60, warn_seconds=30, min_uptime_seconds=900, poll_seconds=10)
    clock = Clock(policy, start=BOOT + timedelta(seconds=30))
    decisions = [clock.poll() for _ in range(20)]
    assert "held" in {d.kind for d in decisions}
    assert any("minimum uptime" in r for d in decisions for r in d.reasons)
    stop = clock.until("stop")
    assert stop.at >= BOOT + timedelta(seconds=900)


def test_never_stop_window_holds_and_the_stop_comes_after_it_with_a_warning() -> None:
    window = Window.parse("Mon-Fri 09:00-18:00 Europe/Berlin")  # 08:00-17:00 UTC in November
    clock = Clock(Policy(idle_seconds=600, warn_seconds=120, min_uptime_seconds=0, poll_seconds=60, windows=(window,)),
                  start=datetime(2026, 11, 23, 15, 0, tzinfo=UTC))
    inside = clock.poll()
    assert inside.kind == "held" and "inside never-stop window Mon-Fri 09:00-18:00 Europe/Berlin" in inside.reasons
    stop = clock.until("stop")
    warned = next(d for d in clock.decisions if "warning_issued" in d.events)
    assert warned.at >= datetime(2026, 11, 23, 17, 0, tzinfo=UTC)
    assert stop.at - warned.at >= timedelta(seconds=120)


def test_window_parsing_days_zones_and_midnight() -> None:
    night = Window.parse("22:00-06:00")
    assert night.contains(datetime(2026, 11, 25, 23, 0, tzinfo=UTC))
    assert night.contains(datetime(2026, 11, 26, 5, 59, tzinfo=UTC))
    assert not night.contains(datetime(2026, 11, 26, 6, 0, tzinfo=UTC))
    weekend = Window.parse("Sat,Sun 00:00-23:59")
    assert weekend.contains(datetime(2026, 11, 28, 12, 0, tzinfo=UTC))
    assert not weekend.contains(datetime(2026, 11, 27, 12, 0, tzinfo=UTC))
    with pytest.raises(InvalidInput, match="unknown day"):
        Window.parse("Funday 09:00-10:00")
    with pytest.raises(InvalidInput, match="Mars/Olympus"):
        Window.parse("Mon 09:00-10:00 Mars/Olympus")
    with pytest.raises(InvalidInput, match=r"expected e\.g\."):
        Window.parse("always")


def test_maximum_age_stops_a_busy_machine_after_a_warning() -> None:
    policy = Policy(idle_seconds=3600, warn_seconds=120, min_uptime_seconds=0, poll_seconds=30, max_age_seconds=7200)
    clock = Clock(policy, start=BOOT + timedelta(seconds=7000))
    early = clock.poll(LIVE)
    assert early.kind == "active"
    warning = clock.until("warning", LIVE)
    assert warning.at >= BOOT + timedelta(seconds=7200) and any("maximum age" in r for r in warning.reasons)
    assert clock.until("stop", LIVE).at - warning.at >= timedelta(seconds=120)


def test_agent_restart_within_tolerance_resumes_the_countdown() -> None:
    clock = Clock()
    first = clock.poll()
    clock.until("warning")
    clock.now += timedelta(seconds=60)  # a quick restart: 90 s gap, tolerance is 3 polls + 10 s = 100 s
    resumed = clock.poll()
    assert resumed.idle_since == first.idle_since and resumed.kind in ("warning", "stop")


def test_agent_restart_after_a_long_gap_restarts_the_idle_clock() -> None:
    clock = Clock()
    first = clock.poll()
    warning = clock.until("warning")
    clock.now += timedelta(minutes=20)  # the agent was down: we do not know what happened meanwhile
    restarted = clock.poll()
    assert "idle_clock_restarted" in restarted.events and "warning_cancelled" in restarted.events
    assert restarted.kind == "idle" and restarted.idle_since == restarted.at != first.idle_since
    stop = clock.until("stop")
    assert stop.at - restarted.at >= timedelta(seconds=600) and stop.at > warning.stop_at


def test_clock_jumping_back_restarts_the_idle_clock() -> None:
    clock = Clock()
    clock.poll()
    clock.poll()
    clock.now -= timedelta(minutes=10)
    assert "idle_clock_restarted" in clock.poll().events


def test_a_new_boot_starts_afresh() -> None:
    state = Countdown(boot_time=BOOT, idle_since=BOOT, snoozed_until=BOOT + timedelta(days=1))
    now = BOOT + timedelta(days=2)
    decision = decide(POLICY, state, now, now - timedelta(minutes=1), IDLE)
    assert decision.events == ("booted",)
    assert decision.idle_since == now and decision.state.snoozed_until is None


def test_after_stop_needs_a_new_idle_period_and_state_round_trips() -> None:
    clock = Clock()
    stop = clock.until("stop")
    clock.state = after_stop(clock.state, stop.at)
    assert Countdown.from_json(clock.state.to_json()) == clock.state
    assert clock.poll().kind == "idle"
    assert clock.until("stop").at - stop.at >= timedelta(seconds=600)


def test_invalid_policy_values_are_refused() -> None:
    with pytest.raises(InvalidInput, match="poll_seconds"):
        Policy(poll_seconds=0)
    with pytest.raises(InvalidInput, match="snooze seconds"):
        snooze(Countdown(), BOOT, 0)


def test_a_snooze_before_the_agent_first_runs_is_kept() -> None:
    now = BOOT + timedelta(hours=1)
    state = snooze(Countdown(), now, 1800)
    decision = decide(Policy(idle_seconds=0, warn_seconds=0, min_uptime_seconds=0), state, now, BOOT, IDLE)
    assert decision.kind == "held" and decision.state.snoozed_until == now + timedelta(seconds=1800)


def test_a_stop_on_another_day_is_announced_with_its_date() -> None:
    clock = Clock(Policy(idle_seconds=86_400, warn_seconds=86_400, min_uptime_seconds=0, poll_seconds=30))
    warning = clock.until("warning")
    assert warning.stop_at is not None and warning.stop_at.date() != warning.at.date()
    assert f"stopping at {warning.stop_at:%Y-%m-%d %H:%M:%S} UTC (in 24.0 h)" in " ".join(warning.reasons)
    today = Clock().until("warning")
    assert f"stopping at {today.stop_at:%H:%M:%S} UTC (in" in " ".join(today.reasons)
