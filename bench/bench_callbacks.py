"""Benchmark: nginx-rtmp `on_publish` callback throughput and latency under concurrent clients.

Ours: `POST /rtmp/on_publish` of the real API (uvicorn, one process) — HMAC-SHA256 with a cached pepper, pooled
async connections, one read and one pipelined write per request (attempt row, registry upsert, key last-used).
Baseline, same run and machine: the naive design the issue warns about — a sync endpoint that opens a database
connection per request and verifies an argon2id hash of the key (argon2-cffi defaults), then records the attempt.

The load generator speaks HTTP/1.0 with a new TCP connection per request, as nginx-rtmp does, with the form fields
nginx sends. Every request publishes with a valid key (the allow path, which writes the most).

    .venv/bin/python bench/bench_callbacks.py [--seconds 10] [--concurrency 32] [--keys 200]

Uses DATABASE_URL when set (a scratch database is created there), else an embedded PostgreSQL in a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import psutil
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.config import Settings  # noqa: E402
from backend.db import connect  # noqa: E402
from backend.db.migrate import migrate  # noqa: E402
from backend.embedded.ports import free_port, wait_for_port  # noqa: E402
from backend.identity import SYSTEM  # noqa: E402
from backend.streams import keys  # noqa: E402

PEPPER = "bench-pepper-" + "b" * 40


# ---- the naive baseline, served by uvicorn from this file -------------------------------------------------------

def naive_app():
    """Per-request connection + argon2id verification: what a straightforward implementation looks like."""
    from argon2 import PasswordHasher
    from argon2.exceptions import VerificationError
    from fastapi import FastAPI, Form, Response

    hasher = PasswordHasher()
    app = FastAPI()
    url = os.environ["DATABASE_URL"]

    @app.post("/rtmp/on_publish")
    def on_publish(name: str = Form(...), addr: str = Form(...), app_name: str = Form(..., alias="app"),
                   key: str = Form(...)) -> Response:
        key_id, _, secret = key.partition(".")
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT key_hash FROM bench_argon2_keys WHERE id = %s", (key_id,)).fetchone()
            try:
                ok = row is not None and hasher.verify(row[0], secret)
            except VerificationError:
                ok = False
            conn.execute("INSERT INTO stream_auth_attempts (call, addr, app, stream, key_id, outcome, reason) "
                         "VALUES ('publish', %s, %s, %s, %s, %s, 'bench')",
                         (addr, app_name, name, key_id, "allow" if ok else "deny"))
        return Response(status_code=200 if ok else 403)

    return app


# ---- load generator ---------------------------------------------------------------------------------------------

@dataclass
class Result:
    name: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    api_cpu_ms: float = float("nan")  # CPU time per answered request: the API process
    db_cpu_ms: float = float("nan")  # and the database backends serving it

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")

    def line(self) -> str:
        return (f"{self.name:<34} {self.rps:>8.0f} req/s  p50 {self.pct(0.50):6.2f} ms  p99 {self.pct(0.99):7.2f} ms"
                f"  max {max(self.latencies_ms, default=0):7.1f} ms  CPU/req: API {self.api_cpu_ms:5.2f} ms,"
                f" DB {self.db_cpu_ms:5.2f} ms"
                f"  ({self.requests} ok, {self.errors} errors)")


def _request(form: dict[str, str]) -> bytes:
    body = urlencode(form).encode()
    return (f"POST /rtmp/on_publish HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Connection: Close\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def _client(port: int, requests: list[bytes], deadline: float, out: Result, offset: int) -> None:
    i = offset
    while time.perf_counter() < deadline:
        payload = requests[i % len(requests)]
        i += 1
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(payload)
            response = await reader.read()
            writer.close()
        except OSError:
            out.errors += 1
            continue
        status = response[9:12]
        if status in (b"200", b"302"):
            out.requests += 1
            out.latencies_ms.append((time.perf_counter() - started) * 1000)
        else:
            out.errors += 1


async def _load(name: str, port: int, requests: list[bytes], seconds: float, concurrency: int,
                cpu_seconds: Callable[[], tuple[float, float]]) -> Result:
    result = Result(name, 0, 0, seconds, [])
    warm = Result("warm-up", 0, 0, 1, [])
    await asyncio.gather(*(_client(port, requests, time.perf_counter() + 1, warm, c) for c in range(concurrency)))
    cpu_before, started = cpu_seconds(), time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_client(port, requests, deadline, result, c * 7) for c in range(concurrency)))
    result.seconds = time.perf_counter() - started
    cpu_after = cpu_seconds()
    per_request = 1000 / max(result.requests, 1)
    result.api_cpu_ms = (cpu_after[0] - cpu_before[0]) * per_request
    result.db_cpu_ms = (cpu_after[1] - cpu_before[1]) * per_request
    return result


def _cpu_meter(server_pid: int, url: str) -> Callable[[], tuple[float, float]]:
    """CPU seconds used so far by the server process (with children) and by the database's backend processes."""
    def total() -> tuple[float, float]:
        with psycopg.connect(url) as conn:
            pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
                                               "AND pid <> pg_backend_pid()")]
        api = [psutil.Process(server_pid), *psutil.Process(server_pid).children(recursive=True)]
        db = [psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)]
        return sum(sum(p.cpu_times()[:2]) for p in api), sum(sum(p.cpu_times()[:2]) for p in db)
    return total


# ---- set-up ------------------------------------------------------------------------------------------------------

def _serve(target: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", *target, "--factory", "--host", "127.0.0.1", "--port",
                             str(port), "--log-level", "warning", "--no-access-log"],
                            env={**os.environ, **env}, cwd=ROOT)
    wait_for_port(port, timeout=30)
    return proc, port


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(15)


def _form(stream: str, key: str, client: int) -> dict[str, str]:
    return {"app": "live", "flashver": "FMLE/3.0 (compatible; Lavf59.27", "tcurl": "rtmp://127.0.0.1:1935/live",
            "addr": "127.0.0.1", "clientid": str(client), "call": "publish", "name": stream, "type": "live",
            "key": key}


def _scratch_database(admin_url: str) -> str:
    name = f"bench_callbacks_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return psycopg.conninfo.make_conninfo(admin_url, dbname=name)


def run(seconds: float, concurrency: int, key_count: int, admin_url: str) -> list[Result]:
    url = _scratch_database(admin_url)
    settings = Settings(database_url=url, db_profile="postgres")
    migrate(settings)
    from argon2 import PasswordHasher

    hasher = PasswordHasher()
    ours, naive = [], []
    with connect(settings) as conn:
        conn.execute("CREATE TABLE bench_argon2_keys (id text PRIMARY KEY, key_hash text NOT NULL)")
        for i in range(key_count):
            issued = keys.create_key(conn, SYSTEM, PEPPER.encode(), f"cam{i}")
            ours.append(_request(_form(f"cam{i}", issued.secret, i)))
        for i in range(min(key_count, 20)):
            secret = keys.new_secret()
            conn.execute("INSERT INTO bench_argon2_keys VALUES (%s, %s)", (f"k{i}", hasher.hash(secret)))
            naive.append(_request(_form(f"cam{i}", f"k{i}.{secret}", i)))
    env = {"DATABASE_URL": url, "STREAM_KEY_PEPPER": PEPPER}
    results = []
    proc, port = _serve(["backend.api.app:create_app"], env)
    try:
        results.append(asyncio.run(_load("ours: HMAC + pool, 1 process", port, ours, seconds, concurrency,
                                         _cpu_meter(proc.pid, url))))
    finally:
        _stop(proc)
    proc, port = _serve(["--app-dir", "bench", "bench_callbacks:naive_app"], env)
    try:
        results.append(asyncio.run(_load("baseline: argon2 + conn/request", port, naive, seconds, concurrency,
                                         _cpu_meter(proc.pid, url))))
    finally:
        _stop(proc)
    with psycopg.connect(url) as conn:
        written = conn.execute("SELECT count(*) FROM stream_auth_attempts").fetchone()[0]
    expected = sum(r.requests for r in results)
    print(f"attempt rows written: {written} (≥ {expected} answered in the timed runs)")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--keys", type=int, default=200)
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
    admin_url = os.environ.get("DATABASE_URL")
    if admin_url:
        results = run(args.seconds, args.concurrency, args.keys, admin_url)
    else:
        from backend.embedded.postgres import EmbeddedPostgres

        with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
            server = EmbeddedPostgres(Path(tmp) / "data", keep_data=False)
            server.start()
            try:
                results = run(args.seconds, args.concurrency, args.keys, server.url)
            finally:
                server.stop()
    for result in results:
        print(result.line())
    ours, base = results
    print(f"throughput ratio ours/baseline: {ours.rps / base.rps:.0f}x; "
          f"p99 ratio baseline/ours: {base.pct(0.99) / ours.pct(0.99):.0f}x")
    print(f"goal ≥ 2,000 req/s and p99 < 10 ms: {'met' if ours.rps >= 2000 and ours.pct(0.99) < 10 else 'NOT met'}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
