"""`/api/v1/gpus`, `/api/v1/gpus/{uuid}`, `/api/v1/gpus/{uuid}/telemetry`, `/api/v1/hosts`, `/api/v1/offenders`.

Thin adapters over `backend/queries`: parameters are validated here (types, ranges, patterns) and again by the
query functions (names, ranges), and both kinds of mistakes come back as 4xx naming the field.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

import psycopg
from fastapi import APIRouter, Depends, Path, Query

from backend.api.auth import viewer
from backend.api.deps import db, settings_of
from backend.api.errors import ERROR_RESPONSES
from backend.api.params import PRINTABLE, End, Start, window
from backend.config import Settings
from backend.queries.fleet import FleetPage, GpuDetail, HostRollup, fleet_overview, gpu_detail, host_rollup
from backend.queries.offenders import Offender, top_offenders
from backend.queries.timeseries import TimeSeries, gpu_timeseries

router = APIRouter(prefix="/api/v1", tags=["gpus"], dependencies=[Depends(viewer)], responses=ERROR_RESPONSES)

Uuid = Annotated[str, Path(min_length=1, max_length=128, pattern=PRINTABLE, description="GPU UUID, e.g. GPU-5a1c…")]


def _stale_after(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.health_stale_after_s)


@router.get("/gpus", response_model=FleetPage, summary="Fleet overview: every GPU with status and latest sample")
def list_gpus(
    host: Annotated[str | None, Query(max_length=253, pattern=PRINTABLE)] = None,
    model: Annotated[str | None, Query(max_length=128, pattern=PRINTABLE)] = None,
    status: Literal["healthy", "warning", "critical", "unknown"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    conn: psycopg.Connection = Depends(db),
    settings: Settings = Depends(settings_of),
) -> FleetPage:
    return fleet_overview(conn, host=host, model=model, status=status, limit=limit, offset=offset,
                          stale_after=_stale_after(settings))


@router.get("/gpus/{gpu_uuid}", response_model=GpuDetail, summary="One GPU: every metric, findings and risk")
def get_gpu(gpu_uuid: Uuid, conn: psycopg.Connection = Depends(db),
            settings: Settings = Depends(settings_of)) -> GpuDetail:
    return gpu_detail(conn, gpu_uuid, stale_after=_stale_after(settings))


@router.get("/gpus/{gpu_uuid}/telemetry", response_model=TimeSeries,
            summary="Time series of chosen metrics (raw ≤ 2 h, 1 m ≤ 3 d, 1 h beyond with resolution=auto)")
def get_telemetry(
    gpu_uuid: Uuid,
    start: Start = None,
    end: End = None,
    metrics: Annotated[str, Query(max_length=2000, description="comma-separated names from GET /api/v1/metrics")]
    = "gpu_temp,gpu_util,power_usage",
    resolution: Literal["auto", "raw", "1m", "1h"] = "auto",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 2000,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
    conn: psycopg.Connection = Depends(db),
) -> TimeSeries:
    lo, hi = window(start, end, timedelta(hours=1))
    return gpu_timeseries(conn, gpu_uuid, lo, hi, metrics, resolution=resolution, limit=limit, cursor=cursor)


@router.get("/hosts", response_model=list[HostRollup], summary="Per host (or datacenter) rollup of the fleet")
def list_hosts(
    by: Literal["host", "datacenter"] = "host",
    conn: psycopg.Connection = Depends(db),
    settings: Settings = Depends(settings_of),
) -> list[HostRollup]:
    return host_rollup(conn, by=by, stale_after=_stale_after(settings))


@router.get("/offenders/{kind}", response_model=list[Offender], summary="Top-N hottest, most ECC, most throttled")
def offenders(
    kind: Literal["hottest", "ecc", "throttled"],
    start: Start = None,
    end: End = None,
    n: Annotated[int, Query(ge=1, le=1000)] = 10,
    conn: psycopg.Connection = Depends(db),
) -> list[Offender]:
    lo, hi = window(start, end, timedelta(days=1))
    return top_offenders(conn, kind, lo, hi, n=n)
