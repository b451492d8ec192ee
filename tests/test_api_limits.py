"""What an anonymous or low-privilege caller cannot do to the API process: send bodies that eat memory, scrape
`/metrics`, or hold a pooled connection with a query that never ends."""

from __future__ import annotations

import select
import socket
from pathlib import Path

import psycopg
import pytest
from fastapi import Depends
from fastapi.testclient import TestClient
from nginx_rtmp import ApiProcess
from psycopg.conninfo import make_conninfo

from backend.api import tokens
from backend.api.deps import db as api_db
from backend.api_app import create_app
from backend.config import Settings, get_settings
from backend.db import connect
from backend.db.connection import query_connection
from backend.errors import Unavailable
from backend.identity.principal import SYSTEM, Role

PRICES = "/api/v1/costs/prices"


def _peak_rss_kib(pid: int) -> int:
    """VmHWM: the most resident memory the process ever had, so a spike freed again still shows."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


def _read_status(sock: socket.socket, timeout: float) -> int:
    sock.settimeout(timeout)
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return int(head.split(b" ", 2)[1])


def _chunked_post(port: int, path: str, total: int, piece: bytes) -> int:
    """POST `total` bytes of a JSON array with chunked transfer encoding (no Content-Length), stopping as soon as
    the server answers; returns the status."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        body = [b'{"gpu_model": "x", "usd_per_gpu_hour": 1, "junk": [']
        sent = 0
        while sent < total:
            body.append(piece)
            sent += len(piece)
        body.append(b"0]}")
        for part in body:
            if select.select([sock], [], [], 0)[0]:
                break  # answered early: stop sending
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            sock.sendall(b"0\r\n\r\n")
        return _read_status(sock, 60)


def test_big_unauthenticated_bodies_are_refused_unread_and_memory_stays_flat(settings, tmp_path):
    api = ApiProcess(env={"DATABASE_URL": settings.database_url}, log_path=tmp_path / "api.log")
    api.start()
    try:
        pid = api.pid  # the server process whose memory we watch
        assert _chunked_post(api.port, PRICES, 1024, b"0," * 512) == 401  # warm up: small bodies are read as before
        before = _peak_rss_kib(pid)
        with socket.create_connection(("127.0.0.1", api.port), timeout=30) as sock:
            sock.sendall(f"POST {PRICES} HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {16 * 1024 * 1024}\r\n\r\n".encode())
            assert _read_status(sock, 10) == 413  # answered before a single body byte was sent
        assert _chunked_post(api.port, PRICES, 16 * 1024 * 1024, b"0," * 32768) == 413
        growth = _peak_rss_kib(pid) - before
    finally:
        api.stop()
    assert growth < 8 * 1024, f"peak RSS grew by {growth} KiB"  # 16 MB parsed before the bearer check: ~100 MB


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        yield c


def test_body_limit_is_json_counts_streamed_bodies_and_keeps_small_posts_working(settings, db):
    admin = tokens.create_token(db, SYSTEM, "admin", Role.admin).value
    limited = settings.model_copy(update={"api_max_body_bytes": 4096})
    with TestClient(create_app(limited)) as client:
        declared = client.post(PRICES, content=b"x" * 5000, headers={"Content-Type": "application/json"})
        assert declared.status_code == 413
        assert declared.json() == {"error": "the request body is larger than 4096 bytes (API_MAX_BODY_BYTES)"}

        def stream():
            for _ in range(10):
                yield b" " * 1000

        streamed = client.post(PRICES, content=stream(), headers={"Content-Type": "application/json",
                                                                   "Authorization": f"Bearer {admin}"})
        assert streamed.status_code == 413 and "4096 bytes" in streamed.json()["error"]
        small = client.post(PRICES, json={"gpu_model": "NVIDIA T4", "usd_per_gpu_hour": "0.35"},
                            headers={"Authorization": f"Bearer {admin}"})
        assert small.status_code == 201, small.text
        form = client.post("/rtmp/on_publish", data={"call": "publish", "app": "live", "name": "x", "key": "k"})
        assert form.status_code == 403 and form.headers["content-type"].startswith("text/plain")  # the callback's
        secret = client.post("/api/v1/secrets/db/versions", json={"value": "\n" * 60_000})
        assert secret.status_code == 401  # a maximal secret value fits its route's own allowance


def test_metrics_need_a_token(client, db):
    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "api_requests_total" not in missing.text
    viewer = tokens.create_token(db, SYSTEM, "prometheus", Role.viewer).value
    scraped = client.get("/metrics", headers={"Authorization": f"Bearer {viewer}"})
    assert scraped.status_code == 200 and "api_requests_total" in scraped.text


def test_api_and_console_connections_time_out_but_background_ones_do_not(settings, monkeypatch):
    monkeypatch.setenv("QUERY_STATEMENT_TIMEOUT_S", "0.5")
    get_settings.cache_clear()
    quick = get_settings()
    app = create_app(quick)

    @app.get("/test/sleep")
    def sleep(seconds: float, conn: psycopg.Connection = Depends(api_db)) -> dict:
        return conn.execute("SELECT %s::text AS t, pg_sleep(%s)",
                            (conn.execute("SHOW statement_timeout").fetchone()["statement_timeout"], seconds)
                            ).fetchone()

    with TestClient(app) as client:
        assert client.get("/test/sleep", params={"seconds": 0}).json()["t"] == "500ms"
        slow = client.get("/test/sleep", params={"seconds": 3})
        assert slow.status_code == 503
        assert "QUERY_STATEMENT_TIMEOUT_S" in slow.json()["error"]
    with query_connection() as conn:  # what the services behind the console and the CLI use
        assert conn.execute("SHOW statement_timeout").fetchone()["statement_timeout"] == "500ms"
    with pytest.raises(Unavailable, match=r"longer than 0\.5 s"), query_connection(quick) as conn:
        conn.execute("SELECT pg_sleep(3)")
    with connect(quick) as conn:  # the sink, migrations and background loops
        assert conn.execute("SHOW statement_timeout").fetchone()["statement_timeout"] == "0"


def test_statement_timeout_keeps_options_already_in_the_url(settings):
    url = make_conninfo(settings.database_url, options="-c work_mem=8MB")
    with query_connection(Settings(database_url=url, query_statement_timeout_s=2)) as conn:
        assert conn.execute("SHOW work_mem").fetchone()["work_mem"] == "8MB"
        assert conn.execute("SHOW statement_timeout").fetchone()["statement_timeout"] == "2s"
