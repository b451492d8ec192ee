"""`GET /api/v1/metrics`: the metric catalog, with units and the aggregates the rollups keep."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from backend.api.auth import viewer
from backend.api.errors import ERROR_RESPONSES
from backend.telemetry.fields import FIELDS

router = APIRouter()


class MetricInfo(BaseModel):
    name: str
    dcgm_field: str
    unit: str
    kind: str
    description: str
    rollups: list[str]


def _rollups(kind: str) -> list[str]:
    return ["avg", "min", "max"] if kind == "gauge" else ["min", "max"]


@router.get("/api/v1/metrics", tags=["meta"], response_model=list[MetricInfo], responses=ERROR_RESPONSES)
def metric_catalog(_: object = Depends(viewer)) -> list[MetricInfo]:
    """Every metric stored per sample, with its unit and the aggregates the 1m/1h rollups keep."""
    return [MetricInfo(name=f.column, dcgm_field=f.dcgm, unit=f.unit, kind=f.kind, description=f.description,
                       rollups=_rollups(f.kind)) for f in FIELDS]
