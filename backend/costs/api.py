"""`/api/v1/costs/*`: spend summaries, $/1M tokens, the month-end projection, the price catalogs and the savings
ledger; `/api/v1/streams/costs`: cost per stream (computed here, where prices live)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated

import psycopg
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from backend.api.auth import admin, viewer
from backend.api.deps import db, settings_of
from backend.api.errors import ERROR_RESPONSES
from backend.api.params import PRINTABLE, End, Start, window
from backend.config import Settings
from backend.costs import catalog
from backend.costs.projection import MonthProjection, month_projection
from backend.costs.savings import SavingsLedger, savings_ledger
from backend.costs.spend import CostSummary, cost_summary
from backend.costs.stream_costs import StreamCosts, stream_costs
from backend.costs.tokens import TokenCost, token_costs
from backend.identity.principal import Principal

router = APIRouter(prefix="/api/v1/costs", tags=["costs"], dependencies=[Depends(viewer)],
                   responses=ERROR_RESPONSES)
streams_router = APIRouter(prefix="/api/v1/streams", tags=["streams"], dependencies=[Depends(viewer)],
                           responses=ERROR_RESPONSES)


@router.get("/summary", response_model=CostSummary, summary="GPU-hours, spend, idle and used cost per group")
def summary(
    start: Start = None,
    end: End = None,
    group_by: Annotated[str, Query(max_length=80, description="total, host, model, gpu, day or label:<name>")]
    = "host",
    conn: psycopg.Connection = Depends(db),
    settings: Settings = Depends(settings_of),
) -> CostSummary:
    lo, hi = window(start, end, timedelta(days=1))
    return cost_summary(conn, lo, hi, group_by=group_by, idle_threshold_pct=settings.cost_idle_util_threshold)


@router.get("/tokens", response_model=list[TokenCost], summary="Cost per million tokens per served model")
def tokens(start: Start = None, end: End = None, conn: psycopg.Connection = Depends(db)) -> list[TokenCost]:
    lo, hi = window(start, end, timedelta(days=1))
    return token_costs(conn, lo, hi)


@router.get("/projection", response_model=MonthProjection, summary="Month-to-date spend and month-end projection")
def projection(
    as_of: datetime | None = None,
    trailing_hours: Annotated[int, Query(ge=1, le=744)] = 24,
    conn: psycopg.Connection = Depends(db),
    settings: Settings = Depends(settings_of),
) -> MonthProjection:
    return month_projection(conn, as_of, trailing=timedelta(hours=trailing_hours),
                            idle_threshold_pct=settings.cost_idle_util_threshold)


@router.get("/prices", response_model=list[catalog.Price], summary="The price catalog ($/GPU-hour)")
def prices(
    model: Annotated[str | None, Query(max_length=128, pattern=PRINTABLE)] = None,
    history: bool = False,
    conn: psycopg.Connection = Depends(db),
) -> list[catalog.Price]:
    return catalog.list_prices(conn, model=model, history=history)


class NewPrice(BaseModel):
    gpu_model: str = Field(min_length=1, max_length=128, pattern=PRINTABLE)
    pricing_kind: catalog.PricingKind = "on_demand"
    usd_per_gpu_hour: Decimal = Field(ge=0, lt=1_000_000, decimal_places=6)
    effective_from: datetime | None = None
    source: str = Field(default="", max_length=500, pattern=r"^[^\x00]*$")


@router.post("/prices", response_model=catalog.Price, status_code=201, summary="Start a new price (admin)")
def set_price(body: NewPrice, principal: Principal = Depends(admin), conn: psycopg.Connection = Depends(db)
              ) -> catalog.Price:
    return catalog.set_price(conn, principal, body.gpu_model, body.pricing_kind, body.usd_per_gpu_hour,
                             effective_from=body.effective_from, source=body.source)


@router.get("/savings", response_model=SavingsLedger, summary="The auto-shutdown savings ledger (default: this month)")
def savings(
    start: Start = None,
    end: End = None,
    horizon_hours: Annotated[float | None, Query(ge=1 / 60, le=24 * 366,
                                                 description="default SAVINGS_HORIZON_HOURS")]
    = None,
    conn: psycopg.Connection = Depends(db),
    settings: Settings = Depends(settings_of),
) -> SavingsLedger:
    stop = end or datetime.now(UTC)
    lo = start or stop.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    hours = settings.savings_horizon_hours if horizon_hours is None else horizon_hours
    return savings_ledger(conn, lo, stop, horizon=timedelta(hours=hours))


@router.get("/vm-prices", response_model=list[catalog.VmPrice], summary="VM prices beyond their GPUs ($/hour)")
def vm_prices(conn: psycopg.Connection = Depends(db)) -> list[catalog.VmPrice]:
    return catalog.list_vm_prices(conn)


class NewVmPrice(BaseModel):
    host: str = Field(min_length=1, max_length=253, pattern=PRINTABLE)
    usd_per_hour: Decimal = Field(ge=0, lt=1_000_000, decimal_places=6)
    source: str = Field(default="", max_length=500, pattern=r"^[^\x00]*$")


@router.post("/vm-prices", response_model=catalog.VmPrice, status_code=201, summary="Set a VM's price (admin)")
def set_vm_price(body: NewVmPrice, principal: Principal = Depends(admin), conn: psycopg.Connection = Depends(db)
                 ) -> catalog.VmPrice:
    return catalog.set_vm_price(conn, principal, body.host, body.usd_per_hour, source=body.source)


@streams_router.get("/costs", response_model=StreamCosts, summary="Cost per stream, key, owner, host or label")
def streams_costs(
    start: Start = None,
    end: End = None,
    group_by: Annotated[str, Query(max_length=80, description="stream, key, owner, host or label:<name>")]
    = "stream",
    conn: psycopg.Connection = Depends(db),
) -> StreamCosts:
    lo, hi = window(start, end, timedelta(days=1))
    return stream_costs(conn, lo, hi, group_by=group_by)
