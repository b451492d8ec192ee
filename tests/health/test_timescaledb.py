"""The health evaluation on the TimescaleDB profile (hypertable `gpu_metrics`), served by the WebAssembly build."""

from __future__ import annotations

from datetime import timedelta

import psycopg
from psycopg.rows import dict_row

from backend.config import Settings
from backend.health import evaluator, service
from backend.identity import SYSTEM
from tests.test_timescaledb_profile import timescale_url  # noqa: F401 (the shared TimescaleDB fixture)

from .crafted import NOW, rows, store


def test_evaluate_and_alerts_on_timescaledb(timescale_url):  # noqa: F811
    settings = Settings(database_url=timescale_url)
    with psycopg.connect(timescale_url, autocommit=True, row_factory=dict_row, prepare_threshold=None) as conn:
        assert conn.execute("SELECT value FROM platform_meta WHERE key = 'profile'").fetchone()["value"] == \
            "timescaledb"
        store(conn, "GPU-ts-ok", rows(40))
        store(conn, "GPU-ts-xid", rows(40, xid_errors=[0] * 30 + [79] * 10), index=1)
        store(conn, "GPU-ts-old", rows(10, end=NOW - timedelta(minutes=30)), index=2)
    summary = evaluator.evaluate_once(settings, now=NOW)
    assert (summary.healthy, summary.critical, summary.unknown, summary.opened) == (1, 1, 1, 2)
    statuses = {h.gpu_uuid: h.status for h in service.fleet_health(SYSTEM, settings=settings)}
    assert statuses == {"GPU-ts-ok": "healthy", "GPU-ts-xid": "critical", "GPU-ts-old": "unknown"}
    open_rules = {a.rule for a in service.list_alerts(SYSTEM, states=("open",), settings=settings)}
    assert open_rules == {"xid_79", "telemetry_stale"}
