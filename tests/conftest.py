"""Test harness: a real PostgreSQL and a real Kafka-compatible broker for the whole session.

Both start here unless `DATABASE_URL` / `KAFKA_BOOTSTRAP_SERVERS` point at running ones. Each test gets its own
database (copied from a migrated template, so it is fast) and its own topic names. With `CI=true` a skipped
test fails the run: CI must install what the tests need instead of skipping them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography.fernet import Fernet
from psycopg import sql

from backend import settings_loader
from backend.config import Settings, get_settings

settings_loader.install()  # as every entry point does: get_settings() resolves `secret:` references
os.environ["SECRETS_ENV_FILE"] = "/nonexistent/secrets.env"  # a developer's own secrets.env must not leak in
# The local secrets store opens only with a configured key: one made up for this test session (children inherit it).
os.environ["SECRETS_LOCAL_KEY"] = Fernet.generate_key().decode()
os.environ.pop("SECRETS_LOCAL_KEY_FILE", None)
_EXTERNAL_DB = os.environ.pop("DATABASE_URL", None)
_EXTERNAL_KAFKA = os.environ.pop("KAFKA_BOOTSTRAP_SERVERS", None)
_TEMPLATE = f"sp_template_{os.getpid()}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (install what the test needs instead): {report.longrepr}"


@pytest.fixture(autouse=True)
def _environment_restored() -> Iterator[None]:
    """Code under test may set process environment (the demo exports its settings to its children): each test
    starts from the session's environment and leaves it as it found it."""
    before = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(before)
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a server where tests may create databases."""
    if _EXTERNAL_DB:
        yield _EXTERNAL_DB
        return
    from backend.embedded.postgres import EmbeddedPostgres

    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", keep_data=False)
    server.start()
    yield server.url
    server.stop()


def _database_url(admin_url: str, name: str) -> str:
    return psycopg.conninfo.make_conninfo(admin_url, dbname=name)


@pytest.fixture(scope="session")
def template_database(pg_admin_url: str) -> Iterator[str]:
    """A database migrated once (postgres profile) that each test's database is copied from."""
    from backend.db.migrate import migrate

    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_TEMPLATE)))
    migrate(Settings(database_url=_database_url(pg_admin_url, _TEMPLATE), db_profile="postgres"))
    yield _TEMPLATE
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(_TEMPLATE)))


@pytest.fixture
def database_url(pg_admin_url: str, template_database: str) -> Iterator[str]:
    """A fresh, migrated database for this test alone."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name),
                                                                      sql.Identifier(template_database)))
    yield _database_url(pg_admin_url, name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def settings(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings for this test, also installed as the process-wide settings (env vars + cache reset)."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SECRETS_LOCAL_PATH", str(tmp_path / "secrets.json"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A Kafka-compatible broker for the session (tansu, memory only)."""
    if _EXTERNAL_KAFKA:
        yield _EXTERNAL_KAFKA
        return
    from backend.embedded.tansu import TansuBroker

    broker = TansuBroker()
    broker.start()
    yield broker.bootstrap
    broker.stop()


@pytest.fixture
def kafka_settings(settings: Settings, kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """`settings` plus the broker and topic names of this test's own (so tests never see each other's data)."""
    suffix = uuid.uuid4().hex[:10]
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("TELEMETRY_TOPIC", f"gpu.metrics.v1.{suffix}")
    monkeypatch.setenv("TOKEN_USAGE_TOPIC", f"token.usage.v1.{suffix}")
    monkeypatch.setenv("DLQ_TOPIC", f"telemetry.dlq.{suffix}")
    monkeypatch.setenv("KAFKA_GROUP_ID", f"telemetry-sink.{suffix}")
    monkeypatch.setenv("KAFKA_PARTITIONS", "4")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def db(settings: Settings) -> Iterator[psycopg.Connection]:
    """A connection to this test's database (autocommit, dict rows)."""
    from backend.db import connect

    with connect(settings, autocommit=True) as conn:
        yield conn
