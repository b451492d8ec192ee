"""What the console and the API call: evaluate the fleet, read health and alerts, acknowledge alerts.

Reads take an open connection (the console and the API hold one); `evaluate_once` opens its own because the
evaluation loop and the CLI run it on their own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import psycopg

from backend.config import Settings, get_settings
from backend.db import connect
from backend.errors import InvalidInput, NotFound
from backend.health import alerts as alert_store
from backend.health.alerts import Alert, AlertEventRecord, AlertPolicy, reconcile
from backend.health.evaluate import HealthPolicy, assess
from backend.health.findings import STATUSES, GpuHealth
from backend.health.notify import Delivery, Webhook, deliver_pending
from backend.health.risk.predict import predict_fleet
from backend.health.risk.store import RiskPrediction, get_risk, list_risk
from backend.health.store import carry_since, finding_from_json, load_fleet, save_health
from backend.identity.principal import Principal

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationSummary:
    evaluated_at: datetime
    gpus: int
    healthy: int
    warning: int
    critical: int
    unknown: int
    opened: int
    reopened: int
    escalated: int
    resolved: int
    notified: int
    notify_failed: int
    notify_pending: int
    duration_s: float


@dataclass(frozen=True)
class GpuDetail:
    health: GpuHealth
    alerts: list[Alert]
    risk: RiskPrediction | None


def evaluate_once(settings: Settings | None = None, *, now: datetime | None = None,
                  http: httpx.Client | None = None) -> EvaluationSummary:
    """Evaluate every GPU, store statuses, reconcile alerts, then notify the webhook (after the commit)."""
    settings = settings or get_settings()
    now = now or datetime.now(UTC)
    started = time.perf_counter()
    policy = HealthPolicy.from_settings(settings)
    # unprepared: each statement runs a handful of times per round, and poolers in transaction mode (PgBouncer)
    # and the WebAssembly TimescaleDB used in tests cannot keep named prepared statements
    with connect(settings, autocommit=True, prepare_threshold=None) as conn:
        fleet = load_fleet(conn, now, policy.load_window, policy.xid_load_window)
        results = [assess(history, now, policy) for history in fleet]
        with conn.transaction():
            carry_since(conn, results)
            save_health(conn, results)
            events = reconcile(conn, results, now, AlertPolicy.from_settings(settings))
        webhook = Webhook.from_settings(settings)
        delivery = deliver_pending(conn, webhook, now=now, client=http) if webhook else Delivery(0, 0, 0)
    counts = {status: sum(r.status == status for r in results) for status in STATUSES}
    kinds = {kind: sum(e.kind == kind for e in events) for kind in ("opened", "reopened", "escalated", "resolved")}
    summary = EvaluationSummary(now, len(results), **counts, **kinds, notified=delivery.delivered,
                                notify_failed=delivery.failed, notify_pending=delivery.pending,
                                duration_s=round(time.perf_counter() - started, 3))
    log.info("health: %d GPUs, %d critical, %d warning, %d unknown; alerts +%d ~%d -%d", summary.gpus,
             summary.critical, summary.warning, summary.unknown, summary.opened + summary.reopened,
             summary.escalated, summary.resolved)
    return summary


def evaluate_loop(settings: Settings | None = None, *, every_s: float, stop: threading.Event,
                  on_summary: Callable[[EvaluationSummary], None] | None = None) -> None:
    """Evaluate every `every_s` seconds until `stop` is set, and refresh risk predictions every
    `HEALTH_PREDICT_EVERY_S` once a model has been trained. A database outage is logged and retried next round."""
    settings = settings or get_settings()
    next_prediction = 0.0
    while not stop.is_set():
        began = time.monotonic()
        try:
            summary = evaluate_once(settings)
            if on_summary is not None:
                on_summary(summary)
            if began >= next_prediction:
                next_prediction = began + settings.health_predict_every_s
                _refresh_risk(settings)
        except psycopg.OperationalError as exc:
            log.warning("health evaluation skipped: database unavailable (%s)", type(exc).__name__)
        stop.wait(max(0.0, every_s - (time.monotonic() - began)))


def _refresh_risk(settings: Settings) -> None:
    try:
        scored = predict_fleet(settings)
    except NotFound as exc:
        log.info("risk predictions skipped: %s", exc)
        return
    log.info("risk: scored %d GPUs", len(scored))


def _health_row(row: dict) -> GpuHealth:
    return GpuHealth(row["gpu_uuid"], row["host"], row["gpu_index"], row["model"], row["status"],
                     [finding_from_json(f) for f in row["findings"]], row["last_seen"], row["evaluated_at"],
                     row["status_since"])


_HEALTH_COLUMNS = "gpu_uuid, host, gpu_index, model, status, findings, last_seen, evaluated_at, status_since"


def fleet_health(conn: psycopg.Connection, *, status: str | None = None, host: str | None = None,
                 model: str | None = None) -> list[GpuHealth]:
    """The latest evaluated status and findings of every GPU, worst first; filters are exact (model: substring)."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    rows = conn.execute(
        f"""SELECT {_HEALTH_COLUMNS} FROM gpu_health
            WHERE (%(status)s::text IS NULL OR status = %(status)s)
              AND (%(host)s::text IS NULL OR host = %(host)s)
              AND (%(model)s::text IS NULL OR model ILIKE '%%' || %(model)s || '%%')
            ORDER BY array_position(ARRAY['critical', 'unknown', 'warning', 'healthy'], status), host, gpu_index""",
        {"status": status, "host": host, "model": model},
    ).fetchall()
    return [_health_row(r) for r in rows]


def gpu_detail(conn: psycopg.Connection, gpu_uuid: str) -> GpuDetail:
    """One GPU's status, findings, active and recent alerts, and failure risk."""
    row = conn.execute(f"SELECT {_HEALTH_COLUMNS} FROM gpu_health WHERE gpu_uuid = %s", (gpu_uuid,)).fetchone()
    if row is None:
        raise NotFound(f"no health evaluation for GPU {gpu_uuid!r} yet")
    return GpuDetail(_health_row(row), alert_store.list_alerts(conn, gpu_uuid=gpu_uuid, limit=50),
                     get_risk(conn, gpu_uuid))


def list_alerts(conn: psycopg.Connection, *, states: tuple[str, ...] | None = None, severity: str | None = None,
                gpu_uuid: str | None = None, host: str | None = None, rule: str | None = None, limit: int = 200,
                offset: int = 0) -> list[Alert]:
    """Alerts, active first then newest; `states` from open, acknowledged, resolved (default: all)."""
    return alert_store.list_alerts(conn, states=states, severity=severity, gpu_uuid=gpu_uuid, host=host, rule=rule,
                                   limit=limit, offset=offset)


def alert_history(conn: psycopg.Connection, alert_id: int) -> list[AlertEventRecord]:
    """One alert's timeline (opened, acknowledged, resolved, …), oldest first, with webhook delivery state."""
    return alert_store.history(conn, alert_id)


def acknowledge(conn: psycopg.Connection, principal: Principal, alert_id: int, note: str | None = None) -> Alert:
    """Acknowledge an open alert (operator or admin); audited."""
    return alert_store.acknowledge(conn, principal, alert_id, note)


def fleet_risk(conn: psycopg.Connection, *, min_probability: float = 0.0, limit: int = 100) -> list[RiskPrediction]:
    """The latest failure-risk predictions, riskiest first."""
    if not 0.0 <= min_probability <= 1.0 or not 1 <= limit <= 1000:
        raise InvalidInput("min_probability must be 0..1 and limit 1..1000")
    return list_risk(conn, min_probability=min_probability, limit=limit)


__all__ = ["EvaluationSummary", "GpuDetail", "acknowledge", "alert_history", "evaluate_loop", "evaluate_once",
           "fleet_health", "fleet_risk", "gpu_detail", "list_alerts", "predict_fleet"]
