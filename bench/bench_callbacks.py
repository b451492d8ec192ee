"""Benchmark: nginx-rtmp `on_publish` callback throughput and latency under concurrent clients.

Ours: `POST /rtmp/on_publish` of the real API app (uvicorn with 1 and with 2 worker processes) — HMAC-SHA256 with a
cached pepper, pooled async connections, one read and one write statement per request (attempt row, registry
upsert, key last-used, failure counter reset in one commit); commits do not wait for the WAL flush (the default),
and once more with `STREAMS_CALLBACK_SYNCHRONOUS_COMMIT=true`.
Baseline, same run and machine: the naive design the issue warns about — a sync endpoint that opens a database
connection per request and verifies an argon2id hash of the key (argon2-cffi defaults), then records the attempt
(4 concurrent clients: more only queue behind argon2).

The load generator speaks HTTP/1.0 with a new TCP connection per request, as nginx-rtmp does, with the form fields
nginx sends. Every request publishes with a valid key (the allow path, which writes the most).

    .venv/bin/python bench/bench_callbacks.py [--seconds 10] [--concurrency 32] [--keys 200] [--repeat 3]

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
from urllib.parse import parse_qsl, urlencode

import psutil
import psycopg
import uvloop
from psycopg import sql
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.config import Settings  # noqa: E402
from backend.db import connect  # noqa: E402
from backend.db.migrate import migrate  # noqa: E402
from backend.embedded.ports import free_port, wait_for_port  # noqa: E402
from backend.identity import SYSTEM  # noqa: E402
from backend.streams import keys  # noqa: E402

PEPPER = "bench-pepper-" + "b" * 40
TOKEN = "bench-callback-token-" + "c" * 32  # the callback URLs' ?token= (the baseline ignores it)
# argon2id at library defaults uses 64 MiB and ~0.1 s of CPU per check: more clients only queue (and starve the
# machine); its throughput is CPU-bound either way, and its latencies at this concurrency flatter it.
BASELINE_CONCURRENCY = 4


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
        return (f"{self.name:<42} {self.rps:>8.0f} req/s  p50 {self.pct(0.50):6.2f} ms  p99 {self.pct(0.99):7.2f} ms"
                f"  max {max(self.latencies_ms, default=0):7.1f} ms  CPU/req: API {self.api_cpu_ms:5.2f} ms,"
                f" DB {self.db_cpu_ms:5.2f} ms"
                f"  ({self.requests} ok, {self.errors} errors)")


def _request(form: dict[str, str]) -> bytes:
    body = urlencode(form).encode()
    return (f"POST /rtmp/on_publish?token={TOKEN} HTTP/1.0\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nConnection: Close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


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


# ---- where the API's CPU goes: the ASGI app called in-process, no HTTP server -------------------------------------

async def _asgi_cpu_ms(application, bodies: list[bytes], n: int) -> float:
    """CPU ms per on_publish when the ASGI app is called directly (this process; the database not counted)."""
    async def call(body: bytes) -> int:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.0", "method": "POST",
                 "scheme": "http", "path": "/rtmp/on_publish", "raw_path": b"/rtmp/on_publish",
                 "query_string": f"token={TOKEN}".encode(),
                 "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
                 "headers": [(b"content-type", b"application/x-www-form-urlencoded"),
                             (b"content-length", str(len(body)).encode())]}
        await application(scope, receive, send)
        return sent[0]["status"]

    for body in bodies[:5]:
        assert await call(body) == 200
    started = time.process_time()
    for i in range(n):
        await call(bodies[i % len(bodies)])
    return (time.process_time() - started) * 1000 / n


def in_process_split(settings: Settings, requests: list[bytes], n: int = 1500, rounds: int = 3) -> dict[str, float]:
    """Best of `rounds`: the whole API app, the same router in a FastAPI app without the app's HTTP middleware,
    and the decision service alone."""
    from fastapi import FastAPI

    from backend.api_app import create_app
    from backend.streams import api
    from backend.streams.callbacks import CallbackGate, CallbackRequest

    bodies = [r.split(b"\r\n\r\n", 1)[1] for r in requests]
    bare = FastAPI()
    bare.state.settings = settings
    bare.include_router(api.router)
    full = create_app(settings)

    async def gate_only() -> float:
        gate = CallbackGate(settings)
        forms = [CallbackRequest.from_form(dict(parse_qsl(b.decode()))) for b in bodies]
        for form in forms[:5]:
            await gate.publish(form)
        started = time.process_time()
        for i in range(n):
            await gate.publish(forms[i % len(forms)])
        elapsed = (time.process_time() - started) * 1000 / n
        await gate.close()
        return elapsed

    best: dict[str, float] = {}
    for _ in range(rounds):
        for label, measure in (("whole API app", lambda: _asgi_cpu_ms(full, bodies, n)),
                               ("router without the app's HTTP middleware", lambda: _asgi_cpu_ms(bare, bodies, n)),
                               ("decision service alone (CallbackGate.publish)", gate_only)):
            best[label] = min(best.get(label, float("inf")), uvloop.run(measure()))
    return best


# ---- set-up ------------------------------------------------------------------------------------------------------

def _serve(target: list[str], env: dict[str, str], workers: int = 1) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", *target, "--factory", "--host", "127.0.0.1", "--port",
                             str(port), "--workers", str(workers), "--log-level", "warning", "--no-access-log",
                             "--loop", "uvloop", "--http", "httptools"],  # as `stream-platform api serve` runs
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


def run(seconds: float, concurrency: int, key_count: int, repeat: int, admin_url: str) -> list[Result]:
    """The median round of each variant (by req/s)."""
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
    env = {"DATABASE_URL": url, "STREAM_KEY_PEPPER": PEPPER, "STREAMS_CALLBACK_TOKEN": TOKEN}
    ours_app, naive_app_target = ["backend.api_app:create_app"], ["--app-dir", "bench", "bench_callbacks:naive_app"]
    variants = [  # label, uvicorn target, processes, extra environment, requests, clients
        ("ours, 1 process", ours_app, 1, {}, ours, concurrency),
        ("ours, 2 processes", ours_app, 2, {}, ours, concurrency),
        ("ours, 2 processes, durable commits", ours_app, 2, {"STREAMS_CALLBACK_SYNCHRONOUS_COMMIT": "true"}, ours,
         concurrency),
        ("baseline: argon2 + conn/request", naive_app_target, 1, {}, naive, BASELINE_CONCURRENCY),
    ]
    rounds: dict[str, list[Result]] = {}
    for _ in range(repeat):  # interleaved, so a noisy neighbour hits every variant alike
        for label, target, workers, extra, requests, clients in variants:
            proc, port = _serve(target, {**env, **extra}, workers)
            try:
                if workers > 1:
                    time.sleep(2)  # let every worker start
                result = uvloop.run(_load(label, port, requests, seconds, clients, _cpu_meter(proc.pid, url)))
                rounds.setdefault(label, []).append(result)
            finally:
                _stop(proc)
    results = [sorted(runs, key=lambda r: r.rps)[len(runs) // 2] for runs in rounds.values()]
    for runs in rounds.values():
        print(f"{runs[0].name}: req/s per round {', '.join(f'{r.rps:.0f}' for r in runs)}")
    in_process = settings.model_copy(update={"stream_key_pepper": SecretStr(PEPPER),
                                             "streams_callback_token": SecretStr(TOKEN)})
    for label, cpu_ms in in_process_split(in_process, ours).items():
        print(f"in-process CPU per on_publish, {label}: {cpu_ms:.3f} ms")
    with psycopg.connect(url) as conn:
        written = conn.execute("SELECT count(*) FROM stream_auth_attempts").fetchone()[0]
    expected = sum(r.requests for runs in rounds.values() for r in runs)
    print(f"attempt rows written: {written} (≥ {expected} answered in the timed runs)")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds; the median round is reported")
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
    admin_url = os.environ.get("DATABASE_URL")
    if admin_url:
        results = run(args.seconds, args.concurrency, args.keys, args.repeat, admin_url)
    else:
        from backend.embedded.postgres import EmbeddedPostgres

        with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
            server = EmbeddedPostgres(Path(tmp) / "data", keep_data=False)
            server.start()
            try:
                results = run(args.seconds, args.concurrency, args.keys, args.repeat, server.url)
            finally:
                server.stop()
    for result in results:
        print(result.line())
    *ours, base = results
    best = max(ours, key=lambda r: r.rps)
    print(f"throughput ratio best/baseline: {best.rps / base.rps:.0f}x; "
          f"p99 ratio baseline/best: {base.pct(0.99) / best.pct(0.99):.0f}x")
    by_name = {r.name: r for r in results}
    fast, durable = by_name["ours, 2 processes"], by_name["ours, 2 processes, durable commits"]
    print(f"commits without waiting for the WAL flush: {fast.rps / durable.rps:.1f}x the durable req/s")
    print(f"goal ≥ 2,000 req/s and p99 < 10 ms: {'met' if best.rps >= 2000 and best.pct(0.99) < 10 else 'NOT met'}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
