"""The query layer on real PostgreSQL, with data stored through the sink: values, resolution choice, filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from analytics_data import Gpu, samples, store
from streamlit.testing.v1 import AppTest

from backend.config import get_settings
from backend.errors import NotFound
from backend.health.findings import Finding, GpuHealth
from backend.health.risk.store import Contribution, RiskPrediction, save_predictions
from backend.health.store import save_health
from backend.identity import users
from backend.identity.principal import SYSTEM, Principal, Role
from backend.queries.catalog import BadParameter, parse_metrics
from backend.queries.fleet import fleet_overview, gpu_detail, host_rollup
from backend.queries.offenders import top_offenders
from backend.queries.timeseries import choose_resolution, decode_cursor, encode_cursor, gpu_timeseries

T0 = datetime(2026, 11, 2, tzinfo=UTC)
A = Gpu("GPU-a", "node-1", 0, "NVIDIA H100 80GB HBM3", {"datacenter": "us-central1-a"})
B = Gpu("GPU-b", "node-1", 1, "NVIDIA H100 80GB HBM3", {"datacenter": "us-central1-a"})
C = Gpu("GPU-c", "node-2", 0, "NVIDIA L4", {"zone": "europe-west4-b"})


@pytest.fixture
def fleet(settings):
    """A: temperature climbs 1 °C a minute for 3 h; B: a steady 40 °C that stops reporting after 1 h; C: hot, ECC
    errors growing and thermally throttled in its second hour."""
    rows = samples(A, T0, 180, gpu_temp=lambda s: 30 + s / 60, gpu_util=50.0, power_usage=300.0,
                   clocks_event_reasons=lambda s: 0x1 if s < 600 else 0)
    rows += samples(B, T0, 60, gpu_temp=40.0, gpu_util=lambda s: 90.0, power_usage=500.0,
                    ecc_sbe_vol_total=lambda s: 2 if s >= 1800 else 0)
    rows += samples(C, T0, 180, gpu_temp=lambda s: 80.0 if 3600 <= s < 7200 else 60.0, gpu_util=10.0, power_usage=70.0,
                    ecc_sbe_vol_total=lambda s: s // 600, ecc_dbe_vol_total=lambda s: 1 if s >= 5400 else 0,
                    clocks_event_reasons=lambda s: 0x40 if 3600 <= s < 7200 else 0,
                    thermal_violation=lambda s: max(0, min(s, 7200) - 3600) * 1_000_000)
    store(settings, rows)
    return T0 + timedelta(minutes=180)


def _evaluated(gpu: Gpu, status: str, now: datetime, findings: list[Finding] = ()) -> GpuHealth:
    return GpuHealth(gpu.uuid, gpu.host, gpu.index, gpu.model, status, list(findings), now, now, now)


def test_fleet_overview_returns_latest_sample_and_status(fleet, db):
    now = fleet
    dbe = Finding("ecc_dbe", "critical", "double-bit ECC errors", {"ecc_dbe_vol_total": 1}, now, "drain and reset")
    save_health(db, [_evaluated(C, "critical", now, [dbe]), _evaluated(B, "healthy", now)])
    page = fleet_overview(db, now=now)
    assert page.total == 3 and [g.gpu_uuid for g in page.items] == ["GPU-a", "GPU-b", "GPU-c"]
    a, b, c = page.items
    assert a.sample_time == T0 + timedelta(minutes=179, seconds=30)
    assert a.latest["gpu_temp"] == pytest.approx(30 + 10770 / 60)
    assert a.status == "unknown" and not a.stale  # never evaluated: we cannot vouch for it
    assert b.stale and b.status == "unknown"  # healthy two hours ago, silent since
    assert c.status == "critical" and c.latest["ecc_dbe_vol_total"] == 1
    assert a.labels == {"datacenter": "us-central1-a"} and c.model == "NVIDIA L4"


def test_fleet_overview_filters_and_paginates(fleet, db):
    assert [g.gpu_uuid for g in fleet_overview(db, host="node-1", now=fleet).items] == ["GPU-a", "GPU-b"]
    assert [g.gpu_uuid for g in fleet_overview(db, model="NVIDIA L4", now=fleet).items] == ["GPU-c"]
    assert [g.gpu_uuid for g in fleet_overview(db, status="unknown", now=fleet).items] == ["GPU-a", "GPU-b", "GPU-c"]
    assert fleet_overview(db, status="critical", now=fleet).total == 0
    second = fleet_overview(db, limit=2, offset=2, now=fleet)
    assert second.total == 3 and [g.gpu_uuid for g in second.items] == ["GPU-c"]
    beyond = fleet_overview(db, limit=2, offset=10, now=fleet)
    assert beyond.total == 3 and beyond.items == []
    with pytest.raises(BadParameter) as bad:
        fleet_overview(db, status="sick")
    assert bad.value.field == "status"


def test_gpu_detail_has_every_metric_findings_and_risk(fleet, db):
    dbe = Finding("ecc_dbe", "critical", "double-bit ECC errors", {"ecc_dbe_vol_total": 1}, fleet, "drain and reset")
    save_health(db, [_evaluated(C, "critical", fleet, [dbe])])
    save_predictions(db, [RiskPrediction("GPU-c", "node-2", 0, "NVIDIA L4", fleet, 24, 0.83, 0.6, "v1",
                                         [Contribution("sbe_rate", 17.0, 0.0, 0.4)], {"sbe_rate": 17.0})])
    detail = gpu_detail(db, "GPU-c", now=fleet)
    assert detail.gpu.latest["thermal_violation"] == 3600 * 1_000_000
    assert detail.gpu.latest["gpu_temp"] == 60.0 and "sm_clock" in detail.gpu.latest
    assert detail.risk.probability == pytest.approx(0.83) and detail.risk.top_features[0].feature == "sbe_rate"
    assert detail.findings == [dbe] and detail.gpu.status == "critical"
    assert gpu_detail(db, "GPU-a", now=fleet).risk is None
    with pytest.raises(NotFound):
        gpu_detail(db, "GPU-nope")


def test_host_and_datacenter_rollups(fleet, db):
    hosts = {h.key: h for h in host_rollup(db, now=fleet)}
    assert hosts["node-1"].gpus == 2 and hosts["node-1"].stale_gpus == 1
    assert hosts["node-1"].avg_gpu_temp == pytest.approx((30 + 10770 / 60 + 40) / 2)
    assert hosts["node-1"].total_power_w == pytest.approx(800.0)
    assert hosts["node-2"].models == ["NVIDIA L4"] and hosts["node-2"].status_counts == {"unknown": 1}
    dcs = {h.key: h.gpus for h in host_rollup(db, by="datacenter", now=fleet)}
    assert dcs == {"us-central1-a": 2, "europe-west4-b": 1}


def test_resolution_follows_the_range():
    assert choose_resolution(T0, T0 + timedelta(hours=2)) == "raw"
    assert choose_resolution(T0, T0 + timedelta(hours=3)) == "1m"
    assert choose_resolution(T0, T0 + timedelta(days=3)) == "1m"
    assert choose_resolution(T0, T0 + timedelta(days=3, seconds=1)) == "1h"


def test_timeseries_values_at_each_resolution(fleet, db):
    raw = gpu_timeseries(db, "GPU-a", T0, T0 + timedelta(minutes=2), "gpu_temp,gpu_util")
    assert raw.resolution == "raw" and len(raw.points) == 4
    assert [p.values["gpu_temp"] for p in raw.points] == pytest.approx([30, 30.5, 31, 31.5])
    minute = gpu_timeseries(db, "GPU-a", T0, T0 + timedelta(hours=3), ["gpu_temp"])
    assert minute.resolution == "1m" and len(minute.points) == 180
    first = minute.points[0]
    assert (first.values["gpu_temp"], first.min["gpu_temp"], first.max["gpu_temp"]) == pytest.approx((30.25, 30, 30.5))
    lines = gpu_timeseries(db, "GPU-a", T0, T0 + timedelta(hours=3), ["gpu_temp"], bands=False)
    assert [p.values for p in lines.points] == [p.values for p in minute.points]
    assert all(p.min is None and p.max is None for p in lines.points)
    hour = gpu_timeseries(db, "GPU-c", T0, T0 + timedelta(hours=3), "gpu_temp,clocks_event_reasons,ecc_sbe_vol_total",
                          resolution="1h")
    assert [p.values["gpu_temp"] for p in hour.points] == [60.0, 80.0, 60.0]
    assert [p.values["clocks_event_reasons"] for p in hour.points] == [0, 0x40, 0]
    assert [p.values["ecc_sbe_vol_total"] for p in hour.points] == [5, 11, 17]  # counters: the bucket's maximum


def test_timeseries_cursor_pages_through_without_gaps(fleet, db):
    seen, cursor = [], None
    while True:
        page = gpu_timeseries(db, "GPU-b", T0, T0 + timedelta(hours=1), "gpu_temp", limit=50, cursor=cursor)
        seen += [p.time for p in page.points]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == 120 == len(set(seen)) and seen == sorted(seen)


def test_timeseries_rejects_bad_parameters_naming_them(fleet, db):
    cases = [
        ({"metrics": "gpu_temp,bogus"}, "metrics"),
        ({"metrics": ""}, "metrics"),
        ({"end": T0 - timedelta(hours=1)}, "end"),
        ({"limit": 0}, "limit"),
        ({"cursor": "%%%"}, "cursor"),
        ({"cursor": encode_cursor("1h", T0)}, "cursor"),
    ]
    for override, field in cases:
        kwargs = {"start": T0, "end": T0 + timedelta(hours=1), "metrics": "gpu_temp"} | override
        with pytest.raises(BadParameter) as bad:
            gpu_timeseries(db, "GPU-a", **kwargs)
        assert bad.value.field == field, override
    with pytest.raises(NotFound):
        gpu_timeseries(db, "GPU-zzz", T0, T0 + timedelta(hours=1), "gpu_temp")
    assert decode_cursor(encode_cursor("raw", T0), "raw") == T0
    assert [f.column for f in parse_metrics(["gpu_temp", "gpu_temp"])] == ["gpu_temp"]


def test_top_offenders(fleet, db):
    window = (T0, T0 + timedelta(hours=3))
    hottest = top_offenders(db, "hottest", *window, n=2)
    assert [(o.gpu_uuid, o.value) for o in hottest] == [("GPU-a", pytest.approx(30 + 10770 / 60)), ("GPU-c", 80.0)]
    ecc = top_offenders(db, "ecc", *window)
    assert [o.gpu_uuid for o in ecc] == ["GPU-c", "GPU-b"]  # DBE first
    assert ecc[0].detail == {"dbe_increase": 1, "sbe_increase": 17}
    throttled = top_offenders(db, "throttled", *window)
    assert [o.gpu_uuid for o in throttled] == ["GPU-c"]  # GPU-a's 0x1 (idle) is not throttling
    assert throttled[0].value == 60 and throttled[0].detail["thermal_violation_s"] == pytest.approx(3600)
    with pytest.raises(BadParameter):
        top_offenders(db, "loudest", *window)  # type: ignore[arg-type]


def test_ranges_past_their_resolutions_cap_are_refused_naming_the_limit(fleet, db, monkeypatch):
    day = timedelta(days=1)
    refused = [
        (lambda: gpu_timeseries(db, "GPU-a", T0 - 2 * day, T0, "gpu_temp", resolution="raw"), "at most 1 day at raw"),
        (lambda: gpu_timeseries(db, "GPU-a", T0 - 36 * day, T0, "gpu_temp", resolution="1m"), "at most 35 days at 1m"),
        (lambda: gpu_timeseries(db, "GPU-a", T0 - 800 * day, T0, "gpu_temp"), "at most 731 days at 1h"),
        (lambda: top_offenders(db, "hottest", T0 - 36 * day, T0), "at most 35 days at 1m"),
    ]
    for call, limit in refused:
        with pytest.raises(BadParameter, match=limit) as bad:
            call()
        assert bad.value.field == "start" and "QUERY_MAX_RANGE_" in str(bad.value)
    assert gpu_timeseries(db, "GPU-a", T0 - day, T0, "gpu_temp", resolution="raw").points == []
    assert top_offenders(db, "hottest", T0 - 35 * day + timedelta(hours=3), T0 + timedelta(hours=3))
    monkeypatch.setenv("QUERY_MAX_RANGE_1H_DAYS", "0.5")
    get_settings.cache_clear()
    with pytest.raises(BadParameter, match="at most 12 hours at 1h"):
        gpu_timeseries(db, "GPU-a", T0, T0 + day, "gpu_temp", resolution="1h")


def test_console_shows_the_range_cap_message_not_a_traceback(fleet, db, monkeypatch):
    monkeypatch.setenv("QUERY_MAX_RANGE_1M_DAYS", "0.5")
    get_settings.cache_clear()
    users.add_user(db, SYSTEM, "victor", Role.viewer, "correct-horse-battery")
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app" / "main.py"), default_timeout=90)
    at.session_state["principal"] = Principal("victor", Role.viewer)
    at.run()
    at.switch_page("../pages/gpu_detail.py").run()  # the default 24-hour range reads the 1-minute rollup
    assert not at.exception, [e.value for e in at.exception]
    assert any("at most 12 hours at 1m resolution" in e.value for e in at.error), [e.value for e in at.error]
