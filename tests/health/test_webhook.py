"""Webhook delivery to a local HTTP receiver: JSON and Slack payloads, retries, timeouts, redelivery from the
outbox, secret URL."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backend.embedded.ports import free_port
from backend.health import evaluator, service
from backend.health.alerts import AlertPolicy, history, list_alerts, reconcile
from backend.health.findings import Finding, GpuHealth
from backend.health.notify import Webhook, deliver_pending
from backend.identity import Principal, Role

from .crafted import NOW, rows, store


class Receiver:
    """A loopback HTTP server that records JSON posts and answers with scripted status codes (then 200)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        self.script: list[int | float] = []  # a status code, or seconds to stall before answering 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.posts.append((self.path, body))
                step = receiver.script.pop(0) if receiver.script else 200
                if isinstance(step, float):
                    time.sleep(step)
                    step = 200
                self.send_response(step)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/T0123/s3cr3t-token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def _open_alert(db) -> int:
    finding = Finding("xid_79", "critical", "XID 79: GPU has fallen off the bus", {"xid": 79, "count": 1}, NOW,
                      "Drain the node and power-cycle it")
    health = GpuHealth("GPU-abc", "node-a", 3, "NVIDIA H100 80GB HBM3", "critical", [finding])
    [event] = reconcile(db, [health], NOW, AlertPolicy())
    return event.alert.id


def test_json_payload(db, receiver):
    alert_id = _open_alert(db)
    assert deliver_pending(db, Webhook(receiver.url, "json"), now=NOW) == (1, 0, 0)
    [(path, body)] = receiver.posts
    assert path == "/hooks/T0123/s3cr3t-token"
    assert body["event"] == "opened"
    assert body["reason"] == "critical: XID 79: GPU has fallen off the bus"
    assert body["alert"]["id"] == alert_id
    assert body["alert"]["gpu_uuid"] == "GPU-abc"
    assert body["alert"]["rule"] == "xid_79"
    assert body["alert"]["evidence"] == {"xid": 79, "count": 1}
    assert body["alert"]["opened_at"] == NOW.isoformat()
    # delivered once: the next round sends nothing
    assert deliver_pending(db, Webhook(receiver.url, "json"), now=NOW) == (0, 0, 0)
    assert len(receiver.posts) == 1


def test_slack_payload_for_open_and_acknowledge(db, receiver):
    alert_id = _open_alert(db)
    service.acknowledge(Principal("olga", Role.operator), alert_id)
    deliver_pending(db, Webhook(receiver.url, "slack"), now=NOW)
    [(_, opened), (_, acked)] = receiver.posts
    assert opened["text"].startswith(":rotating_light: [CRITICAL] XID 79: GPU has fallen off the bus on node-a GPU 3")
    assert opened["blocks"][0]["type"] == "section"
    texts = json.dumps(opened["blocks"])
    assert "`GPU-abc`" in texts and "Drain the node" in texts and "xid=79" in texts
    assert "acknowledged by olga" in json.dumps(acked["blocks"])
    assert acked["text"].endswith("acknowledged by olga")
    assert [(e.kind, e.actor, e.delivered_at is not None) for e in history(db, alert_id)] == [
        ("opened", "system", True), ("acknowledged", "olga", True)]


def test_retries_server_errors_then_delivers(db, receiver, caplog):
    _open_alert(db)
    receiver.script = [500, 503]
    with caplog.at_level(logging.DEBUG):
        assert deliver_pending(db, Webhook(receiver.url, retries=3, backoff_s=0.01), now=NOW).delivered == 1
    assert len(receiver.posts) == 3
    assert "HTTP Request: POST <webhook>" in caplog.text  # httpx's own line, redacted
    assert "s3cr3t" not in caplog.text


def test_receiver_down_keeps_events_for_the_next_round_without_leaking_the_url(db, receiver, caplog):
    alert_id = _open_alert(db)
    receiver.script = [1.0, 1.0]  # two timeouts
    hook = Webhook(receiver.url, timeout_s=0.2, retries=1, backoff_s=0.01)
    with caplog.at_level(logging.DEBUG):
        assert deliver_pending(db, hook, now=NOW) == (0, 1, 1)
    assert len(receiver.posts) == 2
    assert "retrying next round" in caplog.text
    assert "s3cr3t" not in caplog.text and "s3cr3t" not in repr(hook)
    assert deliver_pending(db, hook, now=NOW) == (1, 0, 0)  # the receiver is back
    assert [(e.attempts, e.delivered_at is not None) for e in history(db, alert_id)] == [(2, True)]
    # events older than the webhook's max age are not sent any more
    _open_alert_later = reconcile(db, [GpuHealth("GPU-z", "node-a", 1, None, "warning", [
        Finding("gpu_temperature", "warning", "hot", {"gpu_temp": 88}, NOW, "cool")])], NOW, AlertPolicy())
    assert _open_alert_later
    assert deliver_pending(db, Webhook(receiver.url, max_age_s=60), now=NOW + timedelta(hours=1)) == (0, 0, 0)


def test_client_error_is_not_retried(db, receiver):
    _open_alert(db)
    receiver.script = [404]
    assert deliver_pending(db, Webhook(receiver.url, retries=3, backoff_s=0.01), now=NOW) == (0, 1, 1)
    assert len(receiver.posts) == 1


def test_evaluate_notifies_open_and_resolve(settings, db, receiver, monkeypatch):
    from backend.config import get_settings

    monkeypatch.setenv("HEALTH_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("HEALTH_WEBHOOK_FORMAT", "slack")
    monkeypatch.setenv("HEALTH_RESOLVE_AFTER_EVALUATIONS", "2")
    monkeypatch.setenv("HEALTH_RESOLVE_HOLD_S", "0")
    get_settings.cache_clear()
    configured = get_settings()
    store(db, "GPU-t", rows(30, gpu_temp=[60.0] * 20 + [91.0] * 10))
    assert evaluator.evaluate_once(configured, now=NOW).notified == 1
    store(db, "GPU-t", rows(12, end=NOW + timedelta(minutes=2), gpu_temp=60.0))
    evaluator.evaluate_once(configured, now=NOW + timedelta(minutes=2))
    summary = evaluator.evaluate_once(configured, now=NOW + timedelta(minutes=2, seconds=30))
    assert (summary.resolved, summary.notified) == (1, 1)
    assert [body["text"].split(" ")[0] for _, body in receiver.posts] == [":rotating_light:", ":white_check_mark:"]
    assert list_alerts(db)[0].state == "resolved"
