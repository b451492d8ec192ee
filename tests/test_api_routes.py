"""The REST API contract on a real database: auth, filters, pagination, resolution, errors that name the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from analytics_data import Gpu, samples, store
from fastapi.testclient import TestClient

from backend.api import tokens
from backend.api_app import create_app
from backend.identity.principal import SYSTEM, Role

T0 = datetime(2026, 11, 2, tzinfo=UTC)
END = T0 + timedelta(hours=3)
A = Gpu("GPU-a", "node-1", 0, "NVIDIA H100 80GB HBM3", {"team": "search"})
B = Gpu("GPU-b", "node-1", 1, "NVIDIA H100 80GB HBM3", {"team": "ads"})
C = Gpu("GPU-c", "node-2", 0, "NVIDIA L4")
WINDOW = {"start": T0.isoformat(), "end": END.isoformat()}


@pytest.fixture
def api(settings, db):
    rows = samples(A, T0, 180, gpu_temp=lambda s: 30 + s / 60, gpu_util=50.0)
    rows += samples(B, T0, 180, gpu_temp=45.0, gpu_util=1.0)
    rows += samples(C, T0, 60, gpu_temp=60.0, gpu_util=80.0, ecc_sbe_vol_total=lambda s: s // 60)
    tokens_rows = [(T0 + timedelta(minutes=m, seconds=30), A, "llama", 60.0, 10, 30_000, 30_000, 100.0, 200.0)
                   for m in range(180)]
    store(settings, rows, tokens_rows)
    viewer = tokens.create_token(db, SYSTEM, "viewer", Role.viewer).value
    admin = tokens.create_token(db, SYSTEM, "admin", Role.admin).value
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {viewer}"
        client.admin_token = admin  # type: ignore[attr-defined]
        yield client


def _error(response, status: int, field: str | None) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body.get("field") == field, body
    return body["error"]


def test_every_v1_endpoint_needs_a_token(settings):
    with TestClient(create_app(settings)) as client:
        for path in ("/api/v1/gpus", "/api/v1/gpus/GPU-a", "/api/v1/gpus/GPU-a/telemetry", "/api/v1/hosts",
                     "/api/v1/offenders/hottest", "/api/v1/costs/summary", "/api/v1/costs/tokens",
                     "/api/v1/costs/projection", "/api/v1/costs/prices", "/api/v1/metrics"):
            response = client.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
        assert client.get("/health").json() == {"status": "ok"}
        spec = client.get("/api/v1/openapi.json").json()
        assert "bearer" in str(spec["components"]["securitySchemes"]).lower()


def test_gpus_filters_pagination_and_detail(api):
    everything = api.get("/api/v1/gpus").json()
    assert everything["total"] == 3 and [g["gpu_uuid"] for g in everything["items"]] == ["GPU-a", "GPU-b", "GPU-c"]
    assert [g["gpu_uuid"] for g in api.get("/api/v1/gpus", params={"host": "node-1"}).json()["items"]] == \
        ["GPU-a", "GPU-b"]
    assert api.get("/api/v1/gpus", params={"model": "NVIDIA L4"}).json()["total"] == 1
    assert api.get("/api/v1/gpus", params={"status": "critical"}).json()["total"] == 0
    page = api.get("/api/v1/gpus", params={"limit": 2, "offset": 2}).json()
    assert (page["total"], [g["gpu_uuid"] for g in page["items"]]) == (3, ["GPU-c"])
    detail = api.get("/api/v1/gpus/GPU-a").json()
    assert detail["gpu"]["latest"]["gpu_temp"] == pytest.approx(30 + 10770 / 60)
    assert detail["findings"] == [] and detail["risk"] is None
    assert "error" in api.get("/api/v1/gpus/GPU-missing").json()
    assert api.get("/api/v1/gpus/GPU-missing").status_code == 404


def test_bad_parameters_are_4xx_naming_the_field(api):
    _error(api.get("/api/v1/gpus", params={"status": "sick"}), 422, "status")
    _error(api.get("/api/v1/gpus", params={"limit": 0}), 422, "limit")
    _error(api.get("/api/v1/gpus", params={"offset": "x"}), 422, "offset")
    _error(api.get("/api/v1/gpus/GPU-a/telemetry", params={"start": "yesterday"}), 422, "start")
    message = _error(api.get("/api/v1/gpus/GPU-a/telemetry", params={**WINDOW, "metrics": "gpu_temp,nope"}), 400,
                     "metrics")
    assert "nope" in message
    _error(api.get("/api/v1/gpus/GPU-a/telemetry", params={"start": END.isoformat(), "end": T0.isoformat()}), 400,
           "end")
    _error(api.get("/api/v1/gpus/GPU-a/telemetry", params={**WINDOW, "cursor": "garbage!"}), 400, "cursor")
    _error(api.get("/api/v1/gpus/GPU-a/telemetry", params={"start": "0001-01-01T00:00:00Z"}), 400, "start")
    _error(api.get("/api/v1/costs/summary", params={"group_by": "colour"}), 400, "group_by")
    _error(api.get("/api/v1/costs/summary", params={"group_by": "label:"}), 400, "group_by")
    _error(api.get("/api/v1/offenders/loudest"), 422, "kind")
    _error(api.get("/api/v1/gpus", params={"host": "a\x00b"}), 422, "host")
    _error(api.get("/api/v1/gpus", params={"host": "node-1\n"}), 422, "host")


def test_ranges_past_their_cap_are_400_naming_the_limit(api):
    month_ago = (END - timedelta(days=40)).isoformat()
    for path, params, limit in [
        ("/api/v1/gpus/GPU-a/telemetry", {"start": (END - timedelta(days=2)).isoformat(), "end": END.isoformat(),
                                          "resolution": "raw"}, "at most 1 day at raw resolution"),
        ("/api/v1/offenders/hottest", {"start": month_ago, "end": END.isoformat()}, "at most 35 days at 1m"),
        ("/api/v1/costs/summary", {"start": month_ago, "end": END.isoformat()}, "at most 35 days at 1m"),
        ("/api/v1/costs/tokens", {"start": month_ago, "end": END.isoformat()}, "at most 35 days at 1m"),
    ]:
        assert limit in _error(api.get(path, params=params), 400, "start"), path


def test_telemetry_resolution_and_cursor(api):
    raw = api.get("/api/v1/gpus/GPU-a/telemetry", params={"start": T0.isoformat(),
                                                         "end": (T0 + timedelta(hours=1)).isoformat(),
                                                         "metrics": "gpu_temp"}).json()
    assert raw["resolution"] == "raw" and len(raw["points"]) == 120 and raw["points"][0]["min"] is None
    minute = api.get("/api/v1/gpus/GPU-a/telemetry", params={**WINDOW, "metrics": "gpu_temp,gpu_util"}).json()
    assert minute["resolution"] == "1m" and len(minute["points"]) == 180
    assert minute["points"][0]["values"] == {"gpu_temp": pytest.approx(30.25), "gpu_util": 50.0}
    hourly = api.get("/api/v1/gpus/GPU-a/telemetry", params={**WINDOW, "resolution": "1h"}).json()
    assert [p["values"]["gpu_temp"] for p in hourly["points"]] == pytest.approx([59.75, 119.75, 179.75])
    times, cursor = [], None
    while True:
        params = {**WINDOW, "metrics": "gpu_temp", "limit": 70} | ({"cursor": cursor} if cursor else {})
        page = api.get("/api/v1/gpus/GPU-a/telemetry", params=params).json()
        times += [p["time"] for p in page["points"]]
        if not (cursor := page["next_cursor"]):
            break
    assert len(times) == 180 == len(set(times))


def test_hosts_and_offenders(api):
    hosts = {h["key"]: h for h in api.get("/api/v1/hosts").json()}
    assert hosts["node-1"]["gpus"] == 2 and hosts["node-2"]["models"] == ["NVIDIA L4"]
    hottest = api.get("/api/v1/offenders/hottest", params={**WINDOW, "n": 1}).json()
    assert [o["gpu_uuid"] for o in hottest] == ["GPU-a"]
    ecc = api.get("/api/v1/offenders/ecc", params=WINDOW).json()
    assert [(o["gpu_uuid"], o["detail"]["sbe_increase"]) for o in ecc] == [("GPU-c", 59)]


def test_costs_endpoints(api):
    summary = api.get("/api/v1/costs/summary", params={**WINDOW, "group_by": "label:team"}).json()
    assert {r["key"]: r["gpu_hours"] for r in summary["rows"]} == {"search": 3.0, "ads": 3.0, "(none)": 1.0}
    assert summary["total"]["idle_gpu_hours"] == 3.0  # B at 1 % utilization
    h100 = next(p for p in api.get("/api/v1/costs/prices").json() if p["gpu_model"] == "NVIDIA H100 80GB HBM3")
    assert summary["total"]["cost_usd"] == pytest.approx(6 * float(h100["usd_per_gpu_hour"]) + 0.71)
    llama = api.get("/api/v1/costs/tokens", params=WINDOW).json()[0]
    assert llama["served_model"] == "llama" and llama["tokens_per_second_per_gpu"] == pytest.approx(1000.0)
    projected = api.get("/api/v1/costs/projection", params={"as_of": END.isoformat()}).json()
    assert projected["month_to_date_usd"] == pytest.approx(summary["total"]["cost_usd"])


def test_only_admin_tokens_edit_prices(api):
    body = {"gpu_model": "NVIDIA T4", "usd_per_gpu_hour": "0.35", "source": "quote"}
    denied = api.post("/api/v1/costs/prices", json=body)
    assert denied.status_code == 403 and "needs role admin" in denied.json()["error"]
    created = api.post("/api/v1/costs/prices", json=body, headers={"Authorization": f"Bearer {api.admin_token}"})
    assert created.status_code == 201, created.text
    assert created.json()["updated_by"] == "token:admin"
    _error(api.post("/api/v1/costs/prices", json={**body, "usd_per_gpu_hour": -1},
                    headers={"Authorization": f"Bearer {api.admin_token}"}), 422, "usd_per_gpu_hour")
