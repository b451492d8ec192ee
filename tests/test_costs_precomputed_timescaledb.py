"""The precomputed GPU-minutes on the timescaledb profile (TimescaleDB 2.23 in WebAssembly, tests/timescale/): the
writer marks the hours it writes, the refresh materializes the 1-minute continuous aggregate over them before it
recounts, and spend equals the reference query over `gpu_metrics_1m` before, during and after, also when the
aggregate's retention policy may have dropped hours."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
from analytics_data import Gpu, store
from psycopg.rows import dict_row
from spend_reference import reference_spend
from test_timescaledb_profile import timescale_url  # noqa: F401 (the module's TimescaleDB fixture)

from backend.config import Settings
from backend.costs.catalog import set_price
from backend.costs.spend import cost_summary
from backend.identity.principal import SYSTEM
from backend.telemetry.sink.rollup_worker import materialize

H100, L4 = "NVIDIA H100 80GB HBM3", "NVIDIA L4"
GPUS = (Gpu("GPU-ts-a", "ts1", 0, H100, {"team": "search"}), Gpu("GPU-ts-b", "ts1", 1, L4, {"team": "ads"}),
        Gpu("GPU-ts-c", "ts2", 0, H100, {"pricing_kind": "spot"}))


def _same_spend(conn: psycopg.Connection, start: datetime, end: datetime) -> None:
    for group_by in ("total", "host", "model", "gpu", "day", "label:team"):
        ours = cost_summary(conn, start, end, group_by=group_by, idle_threshold_pct=5.0)
        with reference_spend():
            assert ours == cost_summary(conn, start, end, group_by=group_by, idle_threshold_pct=5.0), group_by


def _trusted(conn: psycopg.Connection) -> set[datetime]:
    return {r["hour"] for r in conn.execute("SELECT hour FROM gpu_minutes_1h_trusted WHERE idle_threshold = 5")}


def test_precomputed_spend_equals_the_reference_on_timescaledb(timescale_url):  # noqa: F811
    settings = Settings(database_url=timescale_url)
    rng = random.Random(23)
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    hours = {t0 + timedelta(hours=h) for h in range(3)}
    rows = [(gpu, t0 + timedelta(minutes=m, seconds=s), {"gpu_util": rng.choice((0.0, 4.0, 5.0, 6.0, 70.0, None))})
            for m in range(180) for gpu in GPUS if rng.random() < 0.8 for s in (0, 30)]
    ranges = [(t0 - timedelta(hours=1), t0 + timedelta(hours=4)), (t0 + timedelta(minutes=12, seconds=30),
                                                                   t0 + timedelta(hours=2, minutes=47))]
    with psycopg.connect(timescale_url, autocommit=True, row_factory=dict_row) as conn:  # one connection at a time
        before = t0 - timedelta(days=1)
        set_price(conn, SYSTEM, H100, "on_demand", Decimal("10"), effective_from=before, source="test")
        set_price(conn, SYSTEM, H100, "on_demand", Decimal("11"), effective_from=t0 + timedelta(hours=1, minutes=20))
        set_price(conn, SYSTEM, H100, "spot", Decimal("3"), effective_from=before, source="test")
        set_price(conn, SYSTEM, L4, "on_demand", Decimal("1"), effective_from=before, source="test")
    for first in range(0, len(rows), 50):  # INSERTs of ~100 rows crash the WebAssembly server now and then
        store(settings, rows[first:first + 50], use_copy=False)
    with psycopg.connect(timescale_url, autocommit=True) as conn:  # as the policy would: later writes invalidate
        conn.execute("CALL refresh_continuous_aggregate('gpu_metrics_1m', NULL, NULL)")

    assert materialize(settings, due_after=timedelta(0)).gpu_hours >= 3  # refreshes the aggregate, then recounts
    with psycopg.connect(timescale_url, autocommit=True, row_factory=dict_row) as conn:
        assert hours <= _trusted(conn)
        for start, end in ranges:
            _same_spend(conn, start, end)

    late = t0 + timedelta(hours=2)
    store(settings, [(GPUS[1], late + timedelta(minutes=m, seconds=59), {"gpu_util": 0.0}) for m in range(60)],
          use_copy=False)
    with psycopg.connect(timescale_url, autocommit=True, row_factory=dict_row) as conn:
        assert late not in _trusted(conn)
        for start, end in ranges:
            _same_spend(conn, start, end)
    assert materialize(settings, due_after=timedelta(0)).gpu_hours >= 1
    with psycopg.connect(timescale_url, autocommit=True, row_factory=dict_row) as conn:
        assert late in _trusted(conn)
        for start, end in ranges:
            _same_spend(conn, start, end)
        conn.execute("CALL refresh_continuous_aggregate('gpu_metrics_1m', NULL, NULL)")  # as the policy would
        assert late in _trusted(conn)
        for start, end in ranges:
            _same_spend(conn, start, end)

        # hours the 1-minute aggregate's retention may have dropped are never read from the table
        kept = conn.execute("SELECT config->>'drop_after' AS d FROM timescaledb_information.jobs "
                            "WHERE proc_name = 'policy_retention' AND hypertable_name = 'gpu_metrics_1m'").fetchone()
        conn.execute("SELECT remove_retention_policy('gpu_metrics_1m')")
        conn.execute("SELECT add_retention_policy('gpu_metrics_1m', INTERVAL '2 hours')")
        try:
            assert not hours & _trusted(conn)
            for start, end in ranges:
                _same_spend(conn, start, end)
        finally:
            conn.execute("SELECT remove_retention_policy('gpu_metrics_1m')")
            conn.execute("SELECT add_retention_policy('gpu_metrics_1m', %s::interval)", (kept["d"],))
