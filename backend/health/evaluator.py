"""The health evaluation job: evaluate every GPU, store statuses, reconcile alerts, notify the webhook, and refresh
failure-risk predictions. A background loop (`health evaluate --loop`, the demo), not a user's action, so it takes
settings and no principal; what people call is `service.py`.
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
from backend.errors import NotFound
from backend.health.alerts import AlertPolicy, reconcile
from backend.health.evaluate import HealthPolicy, assess
from backend.health.findings import STATUSES
from backend.health.notify import Delivery, Webhook, deliver_pending
from backend.health.risk.predict import predict_fleet
from backend.health.store import carry_since, load_fleet, save_health

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
