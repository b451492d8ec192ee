"""The simulated fleet: deterministic, realistic, monotonic counters, faults visible at their scheduled times."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from backend.errors import InvalidInput
from backend.parsing import parse_duration
from backend.telemetry.collectors.tokens import PEAK_TOKENS_PER_S, TokenMeter, with_token_usage
from backend.telemetry.faults import FaultSpec
from backend.telemetry.fields import BY_COLUMN
from backend.telemetry.messages import GpuSample, TokenUsage, encode
from backend.telemetry.simulator import HW_POWER_BRAKE, HW_THERMAL, MODELS, Fleet

START = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
UUID_FORMAT = re.compile(r"^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
COUNTERS = [c for c, f in BY_COLUMN.items() if f.kind == "counter"]


def _by_gpu(samples) -> dict[str, list[GpuSample]]:
    out: dict[str, list[GpuSample]] = defaultdict(list)
    for s in samples:
        out[s.gpu_uuid].append(s)
    return out


@pytest.fixture(scope="module")
def faulty_day() -> tuple[Fleet, dict[str, list[GpuSample]]]:
    """Three hosts (H100, A100, L4) × 4 GPUs, every fault kind on a chosen GPU, one simulated day at 1 min."""
    specs = ["thermal:gpu-node-00/1@2h", "ecc:gpu-node-01/2@3h", "xid79:gpu-node-02/0@4h",
             "power_brake:gpu-node-00/2@5h", "nvlink:gpu-node-01/3@1h"]
    fleet = Fleet(hosts=3, gpus_per_host=4, seed=42, faults=[FaultSpec.parse(s) for s in specs], start=START)
    return fleet, _by_gpu(fleet.samples(end=START + timedelta(hours=24), interval=MINUTE))


def _gpu(fleet: Fleet, host: str, index: int) -> str:
    return next(g.uuid for g in fleet.gpus if g.host == host and g.index == index)


def test_same_seed_gives_identical_samples_and_other_seeds_differ():
    def run(seed: int) -> list[bytes]:
        fleet = Fleet(hosts=2, gpus_per_host=3, seed=seed, faults=[FaultSpec.parse("ecc@10m")], start=START)
        return [encode(s) for s in fleet.samples(end=START + timedelta(hours=2), interval=timedelta(seconds=30))]

    first, again, other = run(7), run(7), run(8)
    assert first == again
    assert len(first) == 2 * 3 * 240
    assert first != other
    assert {g.uuid for g in Fleet(2, 3, seed=7).gpus} != {g.uuid for g in Fleet(2, 3, seed=8).gpus}


def test_fleet_identity_models_and_uuids():
    fleet = Fleet(hosts=3, gpus_per_host=8, seed=1)
    assert len(fleet.gpus) == 24
    assert len({g.uuid for g in fleet.gpus}) == 24
    assert all(UUID_FORMAT.match(g.uuid) for g in fleet.gpus)
    assert [fleet.gpus[i * 8].model.name for i in range(3)] == [MODELS[k].name for k in ("h100", "a100", "l4")]
    assert {(g.host, g.index) for g in fleet.gpus} == {(f"gpu-node-{h:02d}", i) for h in range(3) for i in range(8)}


def test_values_are_physically_plausible_and_load_varies(faulty_day):
    fleet, by_gpu = faulty_day
    healthy = [g for g in fleet.gpus if not fleet.schedule.for_gpu(g.uuid)]
    utils = []
    for gpu in healthy:
        for s in by_gpu[gpu.uuid]:
            m = s.metrics
            assert 0 <= m["gpu_util"] <= 100
            assert gpu.model.idle_w * 0.9 <= m["power_usage"] <= gpu.model.tdp_w
            assert 15 < m["gpu_temp"] < 85
            assert m["fb_used"] + m["fb_free"] <= gpu.model.memory_mib
            assert m["xid_errors"] == 0
            assert ("memory_temp" in m) == gpu.model.hbm
            assert ("nvlink_crc_flit_error_count_total" in m) == gpu.model.nvlink
            utils.append(m["gpu_util"])
    assert min(utils) <= 3 and max(utils) >= 85  # idle and busy both occur
    busy = [s for s in by_gpu[healthy[0].uuid] if s.metrics["gpu_util"] > 60]
    idle = [s for s in by_gpu[healthy[0].uuid] if s.metrics["gpu_util"] < 5]
    if busy and idle:  # power and temperature follow the load
        assert sum(s.metrics["power_usage"] for s in busy) / len(busy) > sum(
            s.metrics["power_usage"] for s in idle) / len(idle)


def test_counters_never_decrease_even_across_calls(faulty_day):
    _, by_gpu = faulty_day
    for samples in by_gpu.values():
        for before, after in pairwise(samples):
            for name in COUNTERS:
                if name in before.metrics:
                    assert after.metrics[name] >= before.metrics[name], name
    fleet2 = Fleet(hosts=1, gpus_per_host=2, seed=3, start=START)
    first = list(fleet2.samples(end=START + timedelta(hours=1), interval=MINUTE))
    second = list(fleet2.samples(end=START + timedelta(hours=2), interval=MINUTE))
    assert second[0].ts == START + timedelta(hours=1)
    last = {s.gpu_uuid: s for s in first}
    for s in second[:2]:
        assert s.metrics["total_energy_consumption"] > last[s.gpu_uuid].metrics["total_energy_consumption"]
    with pytest.raises(InvalidInput, match="already simulated"):
        next(fleet2.samples(start=START, end=START + MINUTE, interval=MINUTE))
    with pytest.raises(InvalidInput, match="timezone-aware"):
        next(fleet2.samples(end=datetime(2030, 1, 1), interval=MINUTE))


def test_ecc_fault_grows_single_bit_errors_then_a_double_bit_error_at_the_scheduled_time(faulty_day):
    fleet, by_gpu = faulty_day
    uuid = _gpu(fleet, "gpu-node-01", 2)
    event = fleet.schedule.for_gpu(uuid)[0]
    assert event.kind == "ecc"
    assert (event.onset, event.critical_at) == (START + timedelta(hours=3), START + timedelta(hours=9))
    samples = by_gpu[uuid]
    before_onset = [s for s in samples if s.ts < event.onset]
    assert before_onset[-1].metrics["ecc_sbe_vol_total"] == 0
    first_dbe = next(s for s in samples if s.metrics["ecc_dbe_vol_total"] > 0)
    assert first_dbe.ts == event.critical_at
    assert first_dbe.metrics["xid_errors"] == 48
    just_before = samples[samples.index(first_dbe) - 1]
    assert just_before.metrics["ecc_sbe_vol_total"] >= 20  # single-bit errors grew first
    assert samples[-1].metrics["ecc_sbe_vol_total"] > just_before.metrics["ecc_sbe_vol_total"]


def test_xid79_gpu_falls_off_the_bus_and_stops_reporting(faulty_day):
    fleet, by_gpu = faulty_day
    uuid = _gpu(fleet, "gpu-node-02", 0)
    event = fleet.schedule.for_gpu(uuid)[0]
    samples = by_gpu[uuid]
    assert samples[-1].ts == event.critical_at == START + timedelta(hours=4, minutes=45)
    assert samples[-1].metrics["xid_errors"] == 79
    assert all(s.metrics["xid_errors"] == 0 for s in samples[:-1])
    replays_at_onset = next(s for s in samples if s.ts >= event.onset).metrics["pcie_replay_counter"]
    assert samples[-1].metrics["pcie_replay_counter"] - replays_at_onset >= 100
    assert len(by_gpu[_gpu(fleet, "gpu-node-02", 1)]) == 24 * 60  # neighbours keep reporting


def test_thermal_runaway_reaches_critical_temperature_with_thermal_slowdown(faulty_day):
    fleet, by_gpu = faulty_day
    uuid = _gpu(fleet, "gpu-node-00", 1)
    event = fleet.schedule.for_gpu(uuid)[0]
    at = {s.ts: s for s in by_gpu[uuid]}
    assert at[event.onset - MINUTE].metrics["gpu_temp"] < 85
    critical = at[event.critical_at].metrics
    assert critical["gpu_temp"] >= 95 and critical["memory_temp"] >= 95
    assert critical["clocks_event_reasons"] & HW_THERMAL
    assert critical["thermal_violation"] > at[event.onset].metrics["thermal_violation"]


def test_power_brake_sets_0x80_and_grows_power_violation_only_while_active(faulty_day):
    fleet, by_gpu = faulty_day
    uuid = _gpu(fleet, "gpu-node-00", 2)
    event = fleet.schedule.for_gpu(uuid)[0]
    assert event.severity == "warning" and event.ends == event.onset + timedelta(minutes=90)
    samples = by_gpu[uuid]
    during = [s for s in samples if event.onset <= s.ts < event.ends]
    after = [s for s in samples if s.ts >= event.ends]
    assert all(s.metrics["clocks_event_reasons"] & HW_POWER_BRAKE for s in during)
    assert not any(s.metrics["clocks_event_reasons"] & HW_POWER_BRAKE for s in after)
    assert during[-1].metrics["power_violation"] - during[0].metrics["power_violation"] >= 80 * 60 * 1_000_000
    assert max(s.metrics["sm_clock"] for s in during) < 0.45 * MODELS["h100"].sm_clock_max


def test_nvlink_fault_crc_errors_then_replays(faulty_day):
    fleet, by_gpu = faulty_day
    uuid = _gpu(fleet, "gpu-node-01", 3)
    event = fleet.schedule.for_gpu(uuid)[0]
    at = {s.ts: s.metrics for s in by_gpu[uuid]}
    assert at[event.onset - MINUTE]["nvlink_crc_flit_error_count_total"] == 0
    assert at[event.critical_at - MINUTE]["nvlink_crc_flit_error_count_total"] > 60 * 60  # ≥ 1/s on average
    assert at[event.critical_at - MINUTE]["nvlink_replay_error_count_total"] == 0
    assert at[event.critical_at]["nvlink_replay_error_count_total"] >= 1
    assert at[event.critical_at]["nvlink_recovery_error_count_total"] == 1


def test_schedule_labels_for_failure_prediction(faulty_day):
    fleet, _ = faulty_day
    uuid = _gpu(fleet, "gpu-node-01", 2)  # ecc: critical at START + 9h
    six_hours = timedelta(hours=6)
    assert not fleet.schedule.critical_within(uuid, START, six_hours)
    assert fleet.schedule.critical_within(uuid, START + timedelta(hours=4), six_hours)
    assert not fleet.schedule.failed(uuid, START + timedelta(hours=8))
    assert fleet.schedule.failed(uuid, START + timedelta(hours=9))
    brake = _gpu(fleet, "gpu-node-00", 2)
    assert not fleet.schedule.critical_within(brake, START, timedelta(hours=48))  # warnings are not critical
    assert [e.kind for e in fleet.schedule.active(brake, START + timedelta(hours=5, minutes=30))] == ["power_brake"]
    assert {d["kind"] for d in fleet.schedule.as_dicts()} == {"thermal", "ecc", "xid79", "power_brake", "nvlink"}


def test_unplaced_faults_get_seeded_targets_and_onsets():
    fleets = [Fleet(2, 4, seed=5, faults=[FaultSpec.parse("ecc"), FaultSpec.parse("nvlink")], start=START)
              for _ in range(2)]
    assert fleets[0].schedule.as_dicts() == fleets[1].schedule.as_dicts()
    events = fleets[0].schedule.events
    assert len({e.gpu_uuid for e in events}) == 2
    assert all(timedelta(hours=1) <= e.onset - START < timedelta(hours=12) for e in events)


def test_durations_and_fault_spec_syntax():
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("2.5", bare_seconds=True) == timedelta(seconds=2.5)
    assert parse_duration("1d") == timedelta(days=1) and parse_duration("250ms") == timedelta(milliseconds=250)
    for bad in ("", "0", "-5", "1x", "h1", "1h 30m", "2.5\n1"):
        with pytest.raises(InvalidInput):
            parse_duration(bad, what="--interval", bare_seconds=True)
    with pytest.raises(InvalidInput, match="invalid duration '7'"):
        parse_duration("7")  # without bare_seconds a unit is required
    assert FaultSpec.parse("thermal@0m") == FaultSpec("thermal", None, timedelta(0))
    assert FaultSpec.parse("xid79:gpu-node-01/3@1h30m") == FaultSpec("xid79", "gpu-node-01/3", timedelta(minutes=90))
    [event] = Fleet(2, 4, faults=[FaultSpec.parse("power_brake:5@0m")], start=START).schedule.events
    assert (event.host, event.gpu_index, event.onset) == ("gpu-node-01", 1, START)  # fleet ordinal 5


@pytest.mark.parametrize(("spec", "message"), [
    ("meltdown", "not KIND"),
    ("ecc@soon", "invalid fault onset .soon."),
    ("ecc:gpu-node-09/0", "not a GPU of this fleet"),
    ("nvlink:gpu-node-02/0", "has no NVLink"),
])
def test_bad_fault_specs_are_refused_with_a_clear_message(spec, message):
    with pytest.raises(InvalidInput, match=message):
        Fleet(3, 2, faults=[FaultSpec.parse(spec)], start=START)


def test_token_usage_follows_utilization_and_stops_with_the_gpu():
    victim = next(g for g in Fleet(hosts=3, gpus_per_host=8, seed=11).gpus if g.served_model)
    fault = FaultSpec.parse(f"xid79:{victim.host}/{victim.index}@1h")
    fleet = Fleet(hosts=3, gpus_per_host=8, seed=11, faults=[fault], start=START)
    serving = {g.uuid for g in fleet.gpus if g.served_model}
    assert serving and serving != {g.uuid for g in fleet.gpus}
    messages = list(with_token_usage(fleet, fleet.samples(end=START + timedelta(hours=6), interval=timedelta(
        seconds=15)), every=timedelta(minutes=5)))
    usage = [m for m in messages if isinstance(m, TokenUsage)]
    assert {u.gpu_uuid for u in usage} == serving
    assert all(u.interval_s == 300 for u in usage[len(serving):])
    assert all(u.ts.minute % 5 == 0 and u.ts.second == 0 for u in usage)
    util: dict[tuple[str, datetime], list[float]] = defaultdict(list)
    for m in messages:
        if isinstance(m, GpuSample):
            util[m.gpu_uuid, datetime.fromtimestamp((m.ts.timestamp() - 1) // 300 * 300 + 300, UTC)].append(
                m.metrics["gpu_util"])
    gpus = {g.uuid: g for g in fleet.gpus}
    checked = 0
    for u in usage:
        loads = util[u.gpu_uuid, u.ts]
        if u.interval_s == 300 and len(loads) == 20 and sum(loads) / 20 > 10:
            gpu = gpus[u.gpu_uuid]
            expected = PEAK_TOKENS_PER_S[u.served_model][gpu.model.key] * sum(loads) / 20 / 100 * 300
            assert 0.85 * expected <= u.completion_tokens <= 1.15 * expected
            assert u.prompt_tokens > u.completion_tokens and u.requests > 0
            assert u.latency_ms_p95 > u.latency_ms_p50 > 0
            checked += 1
    assert checked > 100
    assert max(u.ts for u in usage if u.gpu_uuid == victim.uuid) <= START + timedelta(hours=1, minutes=45)
    assert TokenMeter(fleet).observe(messages[0]) is None  # a first sample has no interval yet


def test_a_pinned_host_runs_its_workload_and_the_others_are_unchanged() -> None:
    free = Fleet(hosts=3, gpus_per_host=2, seed=5, start=START)
    pinned = Fleet(hosts=3, gpus_per_host=2, seed=5, start=START, host_workloads={"gpu-node-01": "idle"})
    assert {g.workload for g in pinned.gpus if g.host == "gpu-node-01"} == {"idle"}
    assert [(g.uuid, g.workload) for g in pinned.gpus if g.host != "gpu-node-01"] == \
        [(g.uuid, g.workload) for g in free.gpus if g.host != "gpu-node-01"]
    idle = [s for s in pinned.samples(START, START + timedelta(hours=2), timedelta(minutes=1))
            if s.host == "gpu-node-01"]
    assert idle and max(s.metrics["gpu_util"] for s in idle) < 5
    with pytest.raises(InvalidInput, match="unknown workload sleeping"):
        Fleet(hosts=1, gpus_per_host=1, host_workloads={"gpu-node-00": "sleeping"})
