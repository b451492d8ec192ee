"""Each rule fires on a crafted history and stays quiet just below its threshold."""

from __future__ import annotations

from datetime import timedelta

import pytest

from backend.health.evaluate import HealthPolicy, assess
from backend.health.findings import status_of
from backend.health.limits import catalog, limits_for
from backend.health.rules import RuleContext, decode_throttle, run_rules

from .crafted import A100, H100, NOW, history, rows


def findings(samples, *, model=H100, week_ago=None, limits=None, window_s=600.0, xid_window_s=3600.0):
    h = history(samples, model=model, week_ago=week_ago)
    ctx = RuleContext(now=NOW, limits=limits_for(model, limits or catalog()), window_s=window_s,
                      xid_window_s=xid_window_s)
    return {f.rule: f for f in run_rules(h, ctx)}


def test_healthy_history_has_no_findings():
    assert findings(rows(60)) == {}


@pytest.mark.parametrize(
    ("rule", "column", "at", "below", "severity"),
    [
        ("ecc_dbe_volatile", "ecc_dbe_vol_total", 1, 0, "critical"),
        ("row_remap_failure", "row_remap_failure", 1, 0, "critical"),
        ("retired_pages_pending", "retired_pages_pending", 1, 0, "warning"),
        ("uncorrectable_remapped_rows", "uncorrectable_remapped_rows", 512, 511, "warning"),
    ],
)
def test_latest_value_thresholds(rule, column, at, below, severity):
    values = [below] * 50 + [at] * 10
    fired = findings(rows(60, **{column: values}))
    assert fired[rule].severity == severity
    assert fired[rule].evidence[column] == at
    assert fired[rule].since == NOW - timedelta(seconds=90)  # the first of the last ten samples
    assert rule not in findings(rows(60, **{column: below}))


def test_retired_pages_limit_at_63():
    fired = findings(rows(10, retired_pages_sbe=40, retired_pages_dbe=23))
    assert fired["retired_pages_limit"].severity == "critical"
    assert fired["retired_pages_limit"].evidence["total"] == 63
    assert "retired_pages_limit" not in findings(rows(10, retired_pages_sbe=40, retired_pages_dbe=22))


def test_dbe_retired_pages_growing_in_a_week():
    assert "retired_pages_dbe_growth" in findings(rows(10, retired_pages_dbe=17), week_ago={"retired_pages_dbe": 15})
    # only one page added this week, or not more than 15 in all: quiet
    assert "retired_pages_dbe_growth" not in findings(rows(10, retired_pages_dbe=17),
                                                      week_ago={"retired_pages_dbe": 16})
    assert "retired_pages_dbe_growth" not in findings(rows(10, retired_pages_dbe=15),
                                                      week_ago={"retired_pages_dbe": 5})


@pytest.mark.parametrize(
    ("code", "severity"), [(79, "critical"), (48, "critical"), (64, "critical"), (94, "warning"), (31, "warning"),
                           (61, "warning"), (13, "warning")],
)
def test_xid_event_in_window_with_catalog_severity(code, severity):
    xid = [0] * 30 + [code] * 30
    fired = findings(rows(60, xid_errors=xid))
    finding = fired[f"xid_{code}"]
    assert finding.severity == severity
    assert finding.evidence["count"] == 1
    assert finding.since == NOW - timedelta(seconds=290)
    assert finding.action


def test_xid_counted_per_event_not_per_sample():
    xid = [0] * 10 + [31] * 5 + [0] * 5 + [31] * 5 + [43] * 5
    fired = findings(rows(30, xid_errors=xid))
    assert fired["xid_31"].evidence["count"] == 2
    assert fired["xid_43"].evidence["count"] == 1


def test_old_xid_outside_window_no_longer_counts():
    # XID 79 happened 70 minutes ago; the gauge has held it ever since
    xid = [0] * 10 + [79] * 430
    samples = rows(440, xid_errors=xid)
    assert samples[10][0] < NOW - timedelta(hours=1)
    assert "xid_79" not in findings(samples)
    assert "xid_79" in findings(samples, xid_window_s=2 * 3600)


def test_gauge_holding_last_xid_does_not_refire():
    # every sample loaded holds the same XID: no change, no event, however many samples
    assert not any(rule.startswith("xid_") for rule in findings(rows(60, xid_errors=48)))


@pytest.mark.parametrize(
    ("rule", "column", "severity"),
    [("thermal_violation", "thermal_violation", "warning"), ("power_violation", "power_violation", "warning"),
     ("nvlink_replay_errors", "nvlink_replay_error_count_total", "critical"),
     ("nvlink_recovery_errors", "nvlink_recovery_error_count_total", "critical")],
)
def test_counter_growth_in_window(rule, column, severity):
    grown = findings(rows(60, **{column: [1000] * 59 + [1001]}))
    assert grown[rule].severity == severity
    assert grown[rule].evidence[f"{column}_increase"] == 1
    assert rule not in findings(rows(60, **{column: 1000}))
    # growth before the window does not count
    assert rule not in findings(rows(120, **{column: [0] * 10 + [5000] * 110}))
    # a counter reset (driver reload) back to zero is not growth
    assert rule not in findings(rows(60, **{column: [1000] * 30 + [0] * 30}))


@pytest.mark.parametrize(("model", "limit"), [(H100, 30.72), (A100, 15.36)])
def test_pcie_replay_rate_by_generation_and_lanes(model, limit):
    over = int(limit) + 1
    # one sample a minute so each step is exactly one minute's replays
    fired = findings(rows(8, step_s=60, pcie_replay_counter=[100, 100, 100, 100, 100, 100, 100, 100 + over]),
                     model=model)
    assert fired["pcie_replay_rate"].evidence["limit_per_min"] == pytest.approx(limit)
    assert fired["pcie_replay_rate"].evidence["replays_per_min"] == pytest.approx(over)
    below = int(limit)
    quiet = findings(rows(8, step_s=60, pcie_replay_counter=[100] * 7 + [100 + below]), model=model)
    assert "pcie_replay_rate" not in quiet


def test_pcie_limits_configurable_per_model():
    limits = catalog({"H100": {"pcie_gen": 3, "pcie_lanes": 8}})  # 0.48 × 8 = 3.84 per minute
    samples = rows(8, step_s=60, pcie_replay_counter=[0] * 7 + [4])
    assert findings(samples, limits=limits)["pcie_replay_rate"].evidence["limit_per_min"] == pytest.approx(3.84)
    assert "pcie_replay_rate" not in findings(samples)


def test_nvlink_crc_rate_warns_at_1_per_s_and_fails_at_100():
    def crc(per_minute):
        return rows(12, step_s=10, nvlink_crc_flit_error_count_total=[i * per_minute / 6 for i in range(12)])

    assert findings(crc(60))["nvlink_crc_rate"].severity == "warning"
    assert "nvlink_crc_rate" not in findings(crc(54))
    assert findings(crc(6000))["nvlink_crc_rate"].severity == "critical"
    assert findings(crc(5940))["nvlink_crc_rate"].severity == "warning"


@pytest.mark.parametrize(
    ("model", "column", "rule", "warn", "crit"),
    [(H100, "gpu_temp", "gpu_temperature", 87, 90), (A100, "gpu_temp", "gpu_temperature", 85, 89),
     (H100, "memory_temp", "memory_temperature", 90, 95)],
)
def test_temperature_limits_per_model(model, column, rule, warn, crit):
    assert findings(rows(10, **{column: warn}), model=model)[rule].severity == "warning"
    assert findings(rows(10, **{column: crit}), model=model)[rule].severity == "critical"
    assert findings(rows(10, **{column: crit - 0.1}), model=model)[rule].severity == "warning"
    assert rule not in findings(rows(10, **{column: warn - 0.1}), model=model)


def test_temperature_limit_override():
    limits = catalog({"H100": {"gpu_temp_warn": 70}})
    assert findings(rows(10, gpu_temp=72), limits=limits)["gpu_temperature"].evidence["limit"] == 70


def test_throttle_bitmask_decoding():
    assert decode_throttle(0x8 | 0x20 | 0x40 | 0x80) == ["hw_slowdown", "sw_thermal", "hw_thermal", "hw_power_brake"]
    fired = findings(rows(20, clocks_event_reasons=[0] * 15 + [0x48] * 5))
    assert fired["clock_throttle"].evidence == {"clocks_event_reasons": "0x48",
                                                "reasons": ["hw_slowdown", "hw_thermal"]}
    assert fired["clock_throttle"].since == NOW - timedelta(seconds=40)
    # idle (0x1) and the software power cap (0x4) are normal operation
    assert "clock_throttle" not in findings(rows(20, clocks_event_reasons=0x1 | 0x4))


def test_stale_data_is_unknown():
    policy = HealthPolicy(stale_after_s=120)
    fresh = assess(history(rows(10, end=NOW - timedelta(seconds=100))), NOW, policy)
    stale = assess(history(rows(10, end=NOW - timedelta(seconds=130), ecc_dbe_vol_total=1)), NOW, policy)
    assert fresh.status == "healthy"
    assert stale.status == "unknown"
    assert {f.rule for f in stale.findings} == {"ecc_dbe_volatile", "telemetry_stale"}
    assert assess(history([]), NOW, policy).status == "unknown"


def test_status_is_the_worst_finding():
    fired = list(findings(rows(60, gpu_temp=88, ecc_dbe_vol_total=1)).values())
    assert status_of(fired, stale=False) == "critical"
    assert status_of(fired[1:], stale=False) == "warning"
    assert status_of([], stale=False) == "healthy"
