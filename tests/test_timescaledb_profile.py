"""The timescaledb profile on a real TimescaleDB (2.23, PostgreSQL in WebAssembly via PGlite, tests/timescale/):
migrations, hypertable and policies, the readers' rollup queries, the sink writing with INSERT."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import pytest
from psycopg.rows import dict_row

from backend.config import Settings
from backend.db.migrate import migrate
from backend.embedded.ports import free_port, wait_for_port
from backend.telemetry.sink.batch import Batch, add_sample, add_tokens
from backend.telemetry.sink.consumer import Sink
from backend.telemetry.sink.partitions import maintain
from backend.telemetry.sink.validate import TimeWindow
from backend.telemetry.sink.writer import PostgresWriter
from tests.telemetry_sink.conftest import base_time, produce, sample, token_usage, uuid_for
from tests.telemetry_sink.contract import RAW, columns_of, rollup_columns

SERVER = Path(__file__).parent / "timescale"


@pytest.fixture(scope="module")
def timescale_url() -> Iterator[str]:
    """A migrated TimescaleDB for this module (the server takes one connection at a time)."""
    node = shutil.which("node")
    if node is None or not (SERVER / "node_modules").is_dir():
        pytest.skip("TimescaleDB test server not installed: run `make tests/timescale/node_modules`")
    port = free_port()
    process = subprocess.Popen([node, str(SERVER / "server.js"), str(port)], stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, timeout=60)
        url = f"postgresql://postgres:postgres@127.0.0.1:{port}/postgres?sslmode=disable"
        assert migrate(Settings(database_url=url)).profile == "timescaledb"
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _conn(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


def test_schema_hypertable_and_policies(timescale_url):
    with _conn(timescale_url) as conn:
        assert columns_of(conn, "gpu_metrics") == RAW
        assert columns_of(conn, "gpu_metrics_1m") == rollup_columns() == columns_of(conn, "gpu_metrics_1h")
        dims = conn.execute("SELECT hypertable_name, column_name, time_interval FROM "
                            "timescaledb_information.dimensions ORDER BY 1").fetchall()
        assert {(d["hypertable_name"], d["column_name"], d["time_interval"]) for d in dims} >= {
            ("gpu_metrics", "time", timedelta(days=1)), ("token_usage", "time", timedelta(days=7))}
        compression = {r["attname"]: r for r in conn.execute(
            "SELECT attname, segmentby_column_index, orderby_column_index, orderby_asc "
            "FROM timescaledb_information.compression_settings WHERE hypertable_name = 'gpu_metrics'")}
        assert compression["gpu_uuid"]["segmentby_column_index"] == 1
        assert compression["time"]["orderby_column_index"] == 1 and compression["time"]["orderby_asc"] is False
        jobs = {(j["proc_name"], j["hypertable_name"]): j["config"] for j in conn.execute(
            "SELECT proc_name, coalesce(hypertable_name, '') AS hypertable_name, config "
            "FROM timescaledb_information.jobs")}
        caggs = {r["view_name"] for r in conn.execute(
            "SELECT view_name FROM timescaledb_information.continuous_aggregates")}
    assert caggs == {"gpu_metrics_1m", "gpu_metrics_1h"}
    assert jobs[("policy_compression", "gpu_metrics")]["compress_after"] == "2 days"
    assert jobs[("policy_retention", "gpu_metrics")]["drop_after"] == "14 days"
    assert jobs[("policy_retention", "token_usage")]["drop_after"] == "730 days"
    assert jobs[("policy_retention", "gpu_metrics_1m")]["drop_after"] == "90 days"
    assert jobs[("policy_retention", "gpu_metrics_1h")]["drop_after"] == "730 days"
    assert jobs[("policy_refresh_continuous_aggregate", "gpu_metrics_1m")]["end_offset"] == "00:01:00"
    assert jobs[("policy_refresh_continuous_aggregate", "gpu_metrics_1h")]["end_offset"] == "01:00:00"


def test_writer_inserts_idempotently_and_readers_see_rollups(timescale_url):
    t0 = base_time()
    now = datetime.now(UTC)
    window = TimeWindow(now - timedelta(days=14), now + timedelta(minutes=5))
    batch = Batch()
    for i in range(60):
        add_sample(batch, orjson.dumps(sample(t0 + timedelta(seconds=2 * i), gpu=7, gpu_temp=30 + i,
                                              clocks_event_reasons=8 if i == 40 else 0, xid_errors=0)), window)
    add_tokens(batch, orjson.dumps(token_usage(t0, gpu=7)), window)
    writer = PostgresWriter(Settings(database_url=timescale_url), use_copy=False)
    try:
        first, replay = writer.write(batch), writer.write(batch)
    finally:
        writer.close()
    assert (first.metrics_inserted, first.tokens_inserted) == (60, 1)
    assert (replay.metrics_inserted, replay.metrics_duplicates, replay.tokens_inserted) == (0, 60, 0)

    with _conn(timescale_url) as conn:
        for view in ("gpu_metrics_1m", "gpu_metrics_1h"):
            conn.execute(f"CALL refresh_continuous_aggregate('{view}', NULL, NULL)")
        minutes = conn.execute("SELECT bucket, samples, gpu_temp_avg, gpu_temp_min, gpu_temp_max, "
                               "clocks_event_reasons_or FROM gpu_metrics_1m WHERE gpu_uuid = %s ORDER BY bucket",
                               (uuid_for(7),)).fetchall()
        hour = conn.execute("SELECT samples, gpu_temp_avg, host, gpu_index FROM gpu_metrics_1h WHERE gpu_uuid = %s",
                            (uuid_for(7),)).fetchone()
        gpu = conn.execute("SELECT first_seen, last_seen FROM gpus WHERE gpu_uuid = %s", (uuid_for(7),)).fetchone()
    assert [(m["bucket"], m["samples"]) for m in minutes] == [(t0, 30), (t0 + timedelta(minutes=1), 30)]
    assert minutes[0]["gpu_temp_avg"] == pytest.approx(44.5) and minutes[1]["gpu_temp_max"] == 89
    assert [m["clocks_event_reasons_or"] for m in minutes] == [0, 8]
    assert hour["samples"] == 60 and hour["gpu_temp_avg"] == pytest.approx(59.5) and hour["gpu_index"] == 7
    assert (gpu["first_seen"], gpu["last_seen"]) == (t0, t0 + timedelta(seconds=118))


def test_sink_end_to_end_and_retention_from_settings(timescale_url, kafka_settings):
    settings = kafka_settings.model_copy(update={"database_url": timescale_url, "retention_raw_days": 7,
                                                 "retention_1m_days": 30})
    t0 = base_time()
    produce(settings, settings.telemetry_topic, [sample(t0 + timedelta(seconds=i), gpu=9) for i in range(25)])
    summary = Sink(settings, until_idle=1.0, use_copy=False).run()
    assert summary.metrics_written == 25 and summary.dead_lettered == 0

    report = maintain(settings)
    assert report.profile == "timescaledb"
    assert report.policies == {"gpu_metrics": 7, "gpu_metrics_1m": 30, "gpu_metrics_1h": 730, "token_usage": 730}
    with _conn(timescale_url) as conn:
        assert conn.execute("SELECT count(*) AS n FROM gpu_metrics WHERE gpu_uuid = %s",
                            (uuid_for(9),)).fetchone()["n"] == 25
        status = conn.execute("SELECT samples_written, stopped_at FROM sink_status").fetchone()
        assert status["samples_written"] == 25 and status["stopped_at"] is not None  # its last report, on stop
        drops = {j["hypertable_name"]: j["config"]["drop_after"] for j in conn.execute(
            "SELECT hypertable_name, config FROM timescaledb_information.jobs WHERE proc_name = 'policy_retention'")}
    assert drops == {"gpu_metrics": "7 days", "gpu_metrics_1m": "30 days", "gpu_metrics_1h": "730 days",
                     "token_usage": "730 days"}
