"""Alert notifications to a webhook: a generic JSON document, or a Slack-compatible message.

Delivery retries with exponential back-off and a per-request timeout; a receiver that stays down is logged and
counted, never allowed to stop the evaluation loop. The webhook URL may embed a token (Slack's do), so it is a
secret: it never appears in logs or errors.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from backend.config import Settings
from backend.health.alerts import AlertEvent, alert_json

log = logging.getLogger(__name__)
WebhookFormat = Literal["json", "slack"]
_ICONS = {"opened": ":rotating_light:", "reopened": ":repeat:", "escalated": ":arrow_double_up:",
          "resolved": ":white_check_mark:"}


@dataclass(frozen=True)
class Webhook:
    url: str
    format: WebhookFormat = "json"
    timeout_s: float = 5.0
    retries: int = 3
    backoff_s: float = 0.5

    @classmethod
    def from_settings(cls, settings: Settings) -> Webhook | None:
        if settings.health_webhook_url is None or not settings.health_webhook_url.get_secret_value():
            return None
        return cls(settings.health_webhook_url.get_secret_value(), settings.health_webhook_format,
                   settings.health_webhook_timeout_s, settings.health_webhook_retries)

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


def json_payload(event: AlertEvent) -> dict[str, Any]:
    return {"event": event.kind, "alert": alert_json(event.alert), "sent_at": datetime.now(UTC).isoformat()}


def slack_payload(event: AlertEvent) -> dict[str, Any]:
    """Slack incoming-webhook message: `text` for notifications, blocks for the detail."""
    a = event.alert
    headline = f"{_ICONS[event.kind]} [{a.severity.upper()}] {a.title} on {a.host} GPU {a.gpu_index} — {event.kind}"
    evidence = ", ".join(f"{k}={v}" for k, v in a.evidence.items())
    fields = [f"*GPU:* `{a.gpu_uuid}`", f"*Model:* {a.model or 'unknown'}", f"*Rule:* `{a.rule}`",
              f"*Alert:* #{a.id} ({a.state})"]
    return {
        "text": headline,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{headline}*"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Evidence:* {evidence}\n*Action:* {a.action}"}},
        ],
    }


def send(webhook: Webhook, events: list[AlertEvent], client: httpx.Client | None = None) -> tuple[int, int]:
    """Deliver each event; returns (delivered, failed)."""
    build = slack_payload if webhook.format == "slack" else json_payload
    delivered = failed = 0
    hide = _HideUrl(webhook.url)
    logging.getLogger("httpx").addFilter(hide)
    try:
        with client or httpx.Client(timeout=webhook.timeout_s, follow_redirects=False) as http:
            for event in events:
                if _post(http, webhook, build(event)):
                    delivered += 1
                else:
                    failed += 1
                    log.warning("webhook gave up on alert %s (%s) after %d attempts", event.alert.id, event.kind,
                                webhook.retries + 1)
    finally:
        logging.getLogger("httpx").removeFilter(hide)
    return delivered, failed


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
