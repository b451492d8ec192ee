"""Benchmark: the secrets area's hot paths, each as a ratio against a baseline measured in the same run.

1. Local store read (`access latest`, 200 secrets × 2 versions): ours keeps the decrypted document while the file
   is unchanged (inode, mtime, size); baseline decrypts and parses the whole file on every read.
2. Local store write (`add version`): ours takes the flock, encrypts the whole document, fsyncs and replaces it;
   baseline writes the same document as plain JSON with fsync + replace (no lock, no encryption).
3. Secret Manager adapter (official gRPC client) against the wire-level fake on loopback vs the local store read.
4. Service `reveal` (role check + one audit row on its own connection) vs the bare backend read.

    .venv/bin/python bench/bench_secrets.py [--secrets 200] [--seconds 2]

Uses DATABASE_URL when set (a scratch database is created there), else an embedded PostgreSQL in a temp dir.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
from cryptography.fernet import Fernet
from psycopg import sql
from pydantic import SecretBytes, SecretStr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backend.config import Settings  # noqa: E402
from backend.db.migrate import migrate  # noqa: E402
from backend.identity.principal import SYSTEM  # noqa: E402
from backend.secrets.gcp import GcpSecretsBackend, make_client  # noqa: E402
from backend.secrets.local import LocalSecretsBackend  # noqa: E402
from backend.secrets.models import SecretSpec  # noqa: E402
from backend.secrets.service import SecretsService  # noqa: E402
from tests.fakes.secret_manager import FakeSecretManager  # noqa: E402


def rate(fn: Callable[[int], None], seconds: float) -> tuple[float, float]:
    """(operations per second, median latency in ms) over about `seconds`."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        fn(i)
        latencies.append(time.perf_counter() - start)
        i += 1
    return len(latencies) / sum(latencies), statistics.median(latencies) * 1000


def report(title: str, ours: tuple[float, float], base: tuple[float, float], base_name: str) -> None:
    print(f"{title}: {ours[0]:,.0f} ops/s (p50 {ours[1]:.3f} ms) vs {base_name} {base[0]:,.0f} ops/s "
          f"(p50 {base[1]:.3f} ms) → {ours[0] / base[0]:.2f}×")


def fill(backend, count: int) -> None:  # type: ignore[no-untyped-def]
    for n in range(count):
        backend.create_secret(f"s-{n:04d}", SecretSpec(labels={"env": "bench"}))
        for v in range(2):
            backend.add_version(f"s-{n:04d}", SecretBytes(f"value-{n}-{v}-".encode() * 4))


def bench_local(tmp: Path, count: int, seconds: float) -> LocalSecretsBackend:
    store = LocalSecretsBackend(tmp / "store.json", SecretStr(Fernet.generate_key().decode()))
    fill(store, count)
    cached = rate(lambda i: store.access_version(f"s-{i % count:04d}", "latest"), seconds)

    def uncached(i: int) -> None:
        store._snapshot = None
        store.access_version(f"s-{i % count:04d}", "latest")

    report("local read (access latest)", cached, rate(uncached, seconds), "decrypt-every-read")

    writes = rate(lambda i: store.add_version(f"s-{i % count:04d}", SecretBytes(b"rotated-value")), seconds)
    doc = store._read()
    plain = tmp / "plain.json"

    def plain_write(_: int) -> None:
        tmp_file = plain.with_suffix(".tmp")
        with open(tmp_file, "w") as handle:
            json.dump(doc, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_file, plain)

    report("local write (add version)", writes, rate(plain_write, seconds), "plain JSON fsync+replace")
    return store


def bench_gcp(local: LocalSecretsBackend, count: int, seconds: float) -> None:
    fake = FakeSecretManager(project="bench").start()
    try:
        gcp = GcpSecretsBackend("bench", make_client(fake.endpoint))
        fill(gcp, count)
        ours = rate(lambda i: gcp.access_version(f"s-{i % count:04d}", "latest"), seconds)
        base = rate(lambda i: local.access_version(f"s-{i % count:04d}", "latest"), seconds)
        report("gcp adapter via gRPC fake (access latest)", ours, base, "local store")
    finally:
        fake.stop()


def bench_service(local: LocalSecretsBackend, admin_url: str, count: int, seconds: float) -> None:
    name = f"bench_secrets_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        settings = Settings(database_url=psycopg.conninfo.make_conninfo(admin_url, dbname=name),
                            db_profile="postgres", secrets_local_path=local.path)
        migrate(settings)
        service = SecretsService(settings, local)
        ours = rate(lambda i: service.reveal(SYSTEM, f"s-{i % count:04d}"), seconds)
        base = rate(lambda i: local.access_version(f"s-{i % count:04d}", "latest"), seconds)
        report("service reveal (authorize + audit row)", ours, base, "bare backend read")
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        local = bench_local(tmp, args.secrets, args.seconds)
        bench_gcp(local, args.secrets, args.seconds)
        admin_url = os.environ.get("DATABASE_URL")
        server = None
        if not admin_url:
            from backend.embedded.postgres import EmbeddedPostgres

            server = EmbeddedPostgres(tmp / "pg", keep_data=False)
            server.start()
            admin_url = server.url
        try:
            bench_service(local, admin_url, args.secrets, args.seconds)
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
