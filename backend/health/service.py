"""What the console and the CLI call for GPU health: the fleet's statuses and findings, one GPU's detail, alerts and
their timelines, acknowledging, and failure risk. Viewers read; operators acknowledge (audited, denials too).
The evaluation loop that produces all this is `evaluator.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.config import Settings
from backend.db.connection import query_connection
from backend.errors import InvalidInput, NotFound
from backend.health import alerts as alert_store
from backend.health import store
from backend.health.alerts import Alert, AlertEventRecord
from backend.health.findings import STATUSES, GpuHealth
from backend.health.risk.store import RiskPrediction, get_risk, list_risk
from backend.identity.principal import PermissionDenied, Principal, Role, require_role


@dataclass(frozen=True)
class GpuDetail:
    health: GpuHealth
    alerts: list[Alert]
    risk: RiskPrediction | None


def fleet_health(principal: Principal, *, status: str | None = None, host: str | None = None,
                 model: str | None = None, settings: Settings | None = None) -> list[GpuHealth]:
    """The latest evaluated status and findings of every GPU, worst first; filters are exact (model: substring)."""
    require_role(principal, Role.viewer, "view GPU health")
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    with query_connection(settings) as conn:
        return store.list_health(conn, status=status, host=host, model=model)


def gpu_detail(principal: Principal, gpu_uuid: str, *, settings: Settings | None = None) -> GpuDetail:
    """One GPU's status, findings, active and recent alerts, and failure risk."""
    require_role(principal, Role.viewer, "view GPU health")
    with query_connection(settings) as conn:
        health = store.get_health(conn, gpu_uuid)
        if health is None:
            raise NotFound(f"no health evaluation for GPU {gpu_uuid!r} yet")
        return GpuDetail(health, alert_store.list_alerts(conn, gpu_uuid=gpu_uuid, limit=50), get_risk(conn, gpu_uuid))


def list_alerts(principal: Principal, *, states: tuple[str, ...] | None = None, severity: str | None = None,
                gpu_uuid: str | None = None, host: str | None = None, rule: str | None = None, limit: int = 200,
                offset: int = 0, settings: Settings | None = None) -> list[Alert]:
    """Alerts, active first then newest; `states` from open, acknowledged, resolved (default: all)."""
    require_role(principal, Role.viewer, "view alerts")
    with query_connection(settings) as conn:
        return alert_store.list_alerts(conn, states=states, severity=severity, gpu_uuid=gpu_uuid, host=host,
                                       rule=rule, limit=limit, offset=offset)


def alert_history(principal: Principal, alert_id: int, *, settings: Settings | None = None
                  ) -> list[AlertEventRecord]:
    """One alert's timeline (opened, acknowledged, resolved, …), oldest first, with webhook delivery state."""
    require_role(principal, Role.viewer, "view alerts")
    with query_connection(settings) as conn:
        return alert_store.history(conn, alert_id)


def acknowledge(principal: Principal, alert_id: int, note: str | None = None, *,
                settings: Settings | None = None) -> Alert:
    """Acknowledge an open alert (operator or admin); audited, a denial included."""
    with query_connection(settings) as conn:
        try:
            return alert_store.acknowledge(conn, principal, alert_id, note)
        except PermissionDenied:
            conn.commit()  # keep the denial's audit row
            raise


def fleet_risk(principal: Principal, *, min_probability: float = 0.0, limit: int = 100,
               settings: Settings | None = None) -> list[RiskPrediction]:
    """The latest failure-risk predictions, riskiest first."""
    require_role(principal, Role.viewer, "view failure risk")
    if not 0.0 <= min_probability <= 1.0 or not 1 <= limit <= 1000:
        raise InvalidInput("min_probability must be 0..1 and limit 1..1000")
    with query_connection(settings) as conn:
        return list_risk(conn, min_probability=min_probability, limit=limit)
