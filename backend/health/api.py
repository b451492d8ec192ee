"""`/api/v1/alerts`: list alerts and their timelines (viewer), acknowledge one (operator).
Thin over `backend.health.alerts`, on the request's pooled connection."""

from __future__ import annotations

from typing import Annotated, Literal

import psycopg
from fastapi import APIRouter, Body, Depends, Path, Query
from pydantic import BaseModel, Field

from backend.api.auth import operator, viewer
from backend.api.deps import db
from backend.api.errors import ERROR_RESPONSES, ErrorBody
from backend.health import alerts
from backend.health.alerts import Alert, AlertEventRecord
from backend.identity.principal import Principal

router = APIRouter(prefix="/api/v1", tags=["alerts"], responses=ERROR_RESPONSES)

PRINTABLE = r"^[\x20-\x7e]+$"
Text = Annotated[str | None, Query(max_length=200, pattern=PRINTABLE)]
AlertId = Annotated[int, Path(ge=1, le=2**63 - 1, description="alert id")]


class AckRequest(BaseModel):
    note: str | None = Field(default=None, max_length=500, pattern=r"^[^\x00]*$", description="why / who is on it")


@router.get("/alerts", response_model=list[Alert], summary="Alerts, active first then newest",
            dependencies=[Depends(viewer)])
def list_alerts(
    state: Annotated[list[Literal["open", "acknowledged", "resolved"]] | None, Query()] = None,
    severity: Literal["warning", "critical"] | None = None,
    host: Text = None,
    gpu_uuid: Text = None,
    rule: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    conn: psycopg.Connection = Depends(db),
) -> list[Alert]:
    return alerts.list_alerts(conn, states=tuple(state) if state else None, severity=severity, host=host,
                              gpu_uuid=gpu_uuid, rule=rule, limit=limit, offset=offset)


@router.post("/alerts/{alert_id}/ack", response_model=Alert, summary="Acknowledge an open alert (operator)",
             responses={409: {"model": ErrorBody, "description": "the alert is already resolved"},
                        404: {"model": ErrorBody, "description": "no such alert"}})
def acknowledge(
    alert_id: AlertId,
    body: Annotated[AckRequest | None, Body()] = None,
    principal: Principal = Depends(operator),
    conn: psycopg.Connection = Depends(db),
) -> Alert:
    return alerts.acknowledge(conn, principal, alert_id, body.note if body else None)


@router.get("/alerts/{alert_id}/events", response_model=list[AlertEventRecord],
            summary="One alert's timeline, oldest first, with webhook delivery state",
            responses={404: {"model": ErrorBody, "description": "no such alert"}}, dependencies=[Depends(viewer)])
def alert_events(alert_id: AlertId, conn: psycopg.Connection = Depends(db)) -> list[AlertEventRecord]:
    return alerts.history(conn, alert_id)
