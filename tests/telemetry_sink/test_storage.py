"""The storage contract on the postgres profile, and partition/retention upkeep."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from backend.telemetry.sink.partitions import ensure_partitions, existing_partitions, maintain, partition_name
from backend.telemetry.sink.writer import PostgresWriter
from tests.telemetry_sink.contract import RAW, columns_of, rollup_columns


def test_tables_and_views_follow_the_contract(db):
    raw = columns_of(db, "gpu_metrics")
    assert list(raw) == list(RAW) and raw == RAW
    assert columns_of(db, "gpu_metrics_1m") == rollup_columns() == columns_of(db, "gpu_metrics_1h")
    assert set(columns_of(db, "gpus")) == {"gpu_uuid", "host", "gpu_index", "model", "driver", "labels",
                                           "first_seen", "last_seen"}
    assert set(columns_of(db, "token_usage")) == {
        "time", "host", "gpu_uuid", "served_model", "interval_s", "requests", "prompt_tokens", "completion_tokens",
        "latency_ms_p50", "latency_ms_p95", "labels"}
    keys = db.execute("SELECT conrelid::regclass::text AS rel, pg_get_constraintdef(oid) AS def FROM pg_constraint "
                      "WHERE contype IN ('p', 'u') AND conrelid::regclass::text IN "
                      "('gpu_metrics', 'token_usage', 'gpu_metrics_1m_state', 'gpu_metrics_1h_state')").fetchall()
    assert {(k["rel"], k["def"]) for k in keys} == {
        ("gpu_metrics", "PRIMARY KEY (gpu_uuid, \"time\")"),
        ("token_usage", "UNIQUE (gpu_uuid, served_model, \"time\")"),
        ("gpu_metrics_1m_state", "PRIMARY KEY (gpu_uuid, bucket)"),
        ("gpu_metrics_1h_state", "PRIMARY KEY (gpu_uuid, bucket)"),
    }
    strategy = db.execute("SELECT partstrat FROM pg_partitioned_table WHERE partrelid = 'gpu_metrics'::regclass")
    assert strategy.fetchone()["partstrat"] == "r"


def test_maintain_creates_ahead_and_applies_retention(settings, db):
    today = date(2026, 3, 20)
    old_days = [today - timedelta(days=n) for n in (20, 15, 14, 13)]
    assert ensure_partitions(db, old_days) == sorted(old_days)
    assert ensure_partitions(db, old_days) == []  # idempotent
    midnight = datetime(2026, 3, 20, tzinfo=UTC)
    db.execute("INSERT INTO gpu_metrics (time, gpu_uuid, host, gpu_index) VALUES (%s, 'GPU-old1', 'h', 0), "
               "(%s, 'GPU-kept', 'h', 0)", (midnight - timedelta(days=20), midnight - timedelta(days=13, hours=1)))
    for table, age in (("gpu_metrics_1m_state", 91), ("gpu_metrics_1m_state", 89), ("gpu_metrics_1h_state", 731)):
        db.execute(f"INSERT INTO {table} (bucket, gpu_uuid, host, gpu_index, samples) VALUES (%s, 'GPU-x', 'h', 0, 1)",
                   (midnight - timedelta(days=age),))
    for age in (91, 89):  # precomputed GPU-minutes leave with the 1-minute rollups
        db.execute("INSERT INTO gpu_minutes_1h VALUES (%s, 'GPU-x', 'h', 1, 0)", (midnight - timedelta(days=age),))
        db.execute("INSERT INTO gpu_minutes_1h_done VALUES (%s, 5)", (midnight - timedelta(days=age),))

    report = maintain(settings, today=today)

    assert report.profile == "postgres"
    assert report.partitions_created == [today + timedelta(days=n) for n in range(4)]
    assert report.partitions_dropped == [today - timedelta(days=20), today - timedelta(days=15)]
    assert existing_partitions(db) == {today - timedelta(days=14), today - timedelta(days=13),
                                       *(today + timedelta(days=n) for n in range(4))}
    assert [r["gpu_uuid"] for r in db.execute("SELECT gpu_uuid FROM gpu_metrics")] == ["GPU-kept"]
    assert report.rows_deleted == {"gpu_minutes_1h_done": 1, "gpu_minutes_1h": 1, "gpu_metrics_1m_state": 1,
                                   "gpu_metrics_1h_state": 1, "token_usage": 0}
    again = maintain(settings, today=today)
    assert again.partitions_created == again.partitions_dropped == [] and sum(again.rows_deleted.values()) == 0


def test_days_are_not_vacuumed_while_written_and_maintain_freezes_each_finished_day_once(settings, db):
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=2), today - timedelta(days=1), today]
    ensure_partitions(db, days)
    options = {r["relname"]: r["reloptions"] for r in db.execute(
        "SELECT c.relname, c.reloptions FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'gpu_metrics'::regclass")}
    assert options == {partition_name(d): ["autovacuum_vacuum_insert_threshold=-1"] for d in days}
    midnight = datetime.combine(today, datetime.min.time(), tzinfo=UTC)
    db.execute("INSERT INTO gpu_metrics (time, gpu_uuid, host, gpu_index) SELECT %s - g * interval '1 second', "
               "'GPU-a', 'h', 0 FROM generate_series(1, 5000) g", (midnight,))

    first = maintain(settings, today=today)

    assert first.partitions_vacuumed == days[:2]  # the finished days, not the one being written
    state = {r["relname"]: r for r in db.execute(
        "SELECT c.relname, age(c.relfrozenxid) AS age, s.last_vacuum FROM pg_class c JOIN pg_stat_user_tables s "
        "ON s.relid = c.oid WHERE c.relname = ANY(%s)", ([partition_name(d) for d in days],))}
    yesterday, current = state[partition_name(days[1])], state[partition_name(today)]
    assert yesterday["last_vacuum"] is not None and current["last_vacuum"] is None
    assert yesterday["age"] < current["age"]  # frozen past the transactions that created and filled the tables
    assert maintain(settings, today=today).partitions_vacuumed == []  # once: they are done
    assert maintain(settings, today=today + timedelta(days=1)).partitions_vacuumed == [today]


def test_writer_warm_up_connects_and_creates_partitions_before_the_first_batch(settings, db):
    day = date(2031, 5, 17)
    writer = PostgresWriter(settings)
    try:
        writer.warm_up({day})
        assert writer.profile == "postgres" and day in existing_partitions(db)
    finally:
        writer.close()
    unreachable = PostgresWriter(settings.model_copy(update={"database_url": "postgresql://nobody@127.0.0.1:1/none"}))
    unreachable.warm_up({day})  # an outage at start-up is left for the first write to wait out
    assert unreachable.profile is None
