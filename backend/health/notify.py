"""Alert notifications to a webhook: a generic JSON document, or a Slack-compatible message.

The webhook delivers from `alert_events` (an outbox written in the same transaction as the alert change), oldest
first. Each request has a timeout and is retried with exponential back-off; when the receiver stays down, the rest
waits for the next round, so nothing is lost while it is down (events older than `max_age_s` are no longer sent).
The webhook URL may embed a token (Slack's do), so it is a secret: it never appears in logs or errors.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

import httpx
import psycopg

from backend.config import Settings

log = logging.getLogger(__name__)
WebhookFormat = Literal["json", "slack"]
_ICONS = {"opened": ":rotating_light:", "reopened": ":repeat:", "escalated": ":arrow_double_up:",
          "acknowledged": ":eyes:", "resolved": ":white_check_mark:"}


@dataclass(frozen=True)
class Webhook:
    url: str
    format: WebhookFormat = "json"
    timeout_s: float = 5.0
    retries: int = 3
    backoff_s: float = 0.5
    max_age_s: float = 86400.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Webhook | None:
        if settings.health_webhook_url is None or not settings.health_webhook_url.get_secret_value():
            return None
        return cls(settings.health_webhook_url.get_secret_value(), settings.health_webhook_format,
                   settings.health_webhook_timeout_s, settings.health_webhook_retries,
                   max_age_s=settings.health_webhook_max_age_s)

    def __repr__(self) -> str:
        return f"Webhook(format={self.format!r}, timeout_s={self.timeout_s}, retries={self.retries})"


class _HideUrl(logging.Filter):
    """httpx logs every request URL at INFO; a webhook URL is a secret, so those lines are redacted."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def filter(self, record: logging.LogRecord) -> bool:
        if self.url in record.getMessage():
            record.msg, record.args = record.getMessage().replace(self.url, "<webhook>"), ()
        return True


def json_payload(kind: str, alert: dict[str, Any], reason: str) -> dict[str, Any]:
    return {"event": kind, "reason": reason, "alert": alert, "sent_at": datetime.now(UTC).isoformat()}


def slack_payload(kind: str, a: dict[str, Any], reason: str) -> dict[str, Any]:
    """Slack incoming-webhook message: `text` for notifications, blocks for the detail."""
    headline = (f"{_ICONS[kind]} [{a['severity'].upper()}] {a['title']} on {a['host']} GPU {a['gpu_index']} — "
                f"{kind}" + (f" by {a['acknowledged_by']}" if kind == "acknowledged" else ""))
    evidence = ", ".join(f"{k}={v}" for k, v in a["evidence"].items())
    fields = [f"*GPU:* `{a['gpu_uuid']}`", f"*Model:* {a['model'] or 'unknown'}", f"*Rule:* `{a['rule']}`",
              f"*Alert:* #{a['id']} ({a['state']})"]
    return {
        "text": headline,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline}*"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
            {"type": "section",
             "text": {"type": "mrkdwn", "text": f"*Why:* {reason}\n*Evidence:* {evidence}\n*Action:* {a['action']}"}},
        ],
    }


class Delivery(NamedTuple):
    delivered: int
    failed: int
    pending: int


def deliver_pending(conn: psycopg.Connection, webhook: Webhook, *, now: datetime | None = None, limit: int = 200,
                    client: httpx.Client | None = None) -> Delivery:
    """Send undelivered alert events, oldest first; stop at the first one the receiver will not take.

    Rows are locked while sending (`SKIP LOCKED`), so two evaluators never send the same event twice.
    """
    build = slack_payload if webhook.format == "slack" else json_payload
    oldest = (now or datetime.now(UTC)) - timedelta(seconds=webhook.max_age_s)
    delivered = failed = 0
    hide = _HideUrl(webhook.url)
    logging.getLogger("httpx").addFilter(hide)
    try:
        with conn.transaction(), client or httpx.Client(timeout=webhook.timeout_s, follow_redirects=False) as http:
            rows = conn.execute(
                """SELECT id, alert_id, kind, reason, alert FROM alert_events WHERE delivered_at IS NULL AND at >= %s
                   ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED""",
                (oldest, limit),
            ).fetchall()
            for row in rows:
                ok = _post(http, webhook, build(row["kind"], row["alert"], row["reason"]))
                conn.execute(
                    "UPDATE alert_events SET attempts = attempts + 1, delivered_at = CASE WHEN %s THEN now() END "
                    "WHERE id = %s", (ok, row["id"]))
                if not ok:
                    failed = 1
                    log.warning("webhook did not take alert %s (%s) after %d attempts; retrying next round",
                                row["alert_id"], row["kind"], webhook.retries + 1)
                    break
                delivered += 1
    finally:
        logging.getLogger("httpx").removeFilter(hide)
    pending = conn.execute(
        "SELECT count(*) AS n FROM alert_events WHERE delivered_at IS NULL AND at >= %s", (oldest,)
    ).fetchone()["n"]
    return Delivery(delivered, failed, pending)


def _post(http: httpx.Client, webhook: Webhook, payload: dict[str, Any]) -> bool:
    for attempt in range(webhook.retries + 1):
        try:
            response = http.post(webhook.url, json=payload)
            if response.is_success:
                return True
            reason = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code != 429:
                log.warning("webhook refused the notification (%s); not retrying", reason)
                return False
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
        log.info("webhook attempt %d failed (%s)", attempt + 1, reason)
        if attempt < webhook.retries:
            time.sleep(webhook.backoff_s * 2**attempt)
    return False
