"""System secrets: created once on first use, then read back (also by other processes), audited, never logged."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import psycopg
import pytest

from backend.config import Settings
from backend.secrets import system


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    system._cache.clear()


def test_created_on_first_use_then_reused(settings: Settings, db: psycopg.Connection,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    calls: list[str] = []

    def generate() -> str:
        calls.append("x")
        return "sys-value-7f3a9c"

    assert system.get_or_create("rtmp-token", generate, settings) == "sys-value-7f3a9c"
    system._cache.clear()
    assert system.get_or_create("rtmp-token", lambda: "other", settings) == "sys-value-7f3a9c"
    assert calls == ["x"]

    assert not settings.secrets_local_path.with_suffix(".key").exists(), "the key is configured, never made up"
    assert "sys-value-7f3a9c" not in caplog.text
    assert b"sys-value-7f3a9c" not in settings.secrets_local_path.read_bytes()

    rows = db.execute("SELECT actor, action, target, outcome, detail::text AS detail FROM audit_log "
                      "WHERE area = 'secrets' ORDER BY id").fetchall()
    assert {(r["actor"], r["action"], r["outcome"]) for r in rows} >= {
        ("system", "create", "ok"), ("system", "reveal", "ok")}
    assert all("sys-value" not in r["detail"] for r in rows)


def test_concurrent_processes_agree_on_one_value(settings: Settings) -> None:
    code = (
        "import secrets, sys; from backend.secrets.system import get_or_create; "
        "print(get_or_create('shared', lambda: secrets.token_hex(16)))"
    )
    env = {**os.environ}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=env, text=True) for _ in range(4)]
    values = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(values) == 1 and len(values.pop()) == 32
    assert system.get_or_create("shared", lambda: "never", settings) != "never"
