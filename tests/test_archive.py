"""The Parquet archive: export, verification, retention's refusal, partial uploads, GCS, restore, the page.

Everything runs for real: the test's own PostgreSQL, Parquet files on disk, the official google-cloud-storage client
against gcp-storage-emulator (STORAGE_EMULATOR_HOST, which the client itself honours), DuckDB and pandas reading
the files, Streamlit's AppTest for the page.
"""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import psycopg
import pyarrow.parquet as pq
import pytest
from gcp_storage_emulator.server import create_server
from google.cloud import storage
from psycopg.rows import dict_row
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from backend.cli import app
from backend.config import Settings, get_settings
from backend.errors import Conflict, NotFound
from backend.identity import users
from backend.identity.principal import SYSTEM, PermissionDenied, Principal, Role
from backend.telemetry import archive
from backend.telemetry.sink.partitions import ensure_partitions, maintain
from tests import test_timescaledb_profile

TODAY = datetime.now(UTC).date()  # the CLI archives relative to the real day
OLD, OLDER = TODAY - timedelta(days=16), TODAY - timedelta(days=20)
RECENT = TODAY - timedelta(days=2)
HOSTS, GPUS, STEP_S = ("gpu-node-00", "gpu node/01"), 2, 60  # a host name that needs URL-quoting
PER_DAY = len(HOSTS) * GPUS * 24 * 3600 // STEP_S
MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
runner = CliRunner()
timescale_server = test_timescaledb_profile.timescale_url  # that module's TimescaleDB server fixture


def _fill(db: psycopg.Connection, day: date) -> None:
    """A whole UTC day for two hosts × two GPUs, one sample a minute, with NULLs, NaN, ±inf and JSON with quotes,
    so every conversion the archive makes is exercised."""
    ensure_partitions(db, [day])
    db.execute(
        """INSERT INTO gpu_metrics (time, gpu_uuid, host, gpu_index, gpu_temp, power_usage, total_energy_consumption,
                                    gpu_util, xid_errors, clocks_event_reasons, extra)
           SELECT %(start)s + make_interval(secs => s * %(step)s), 'GPU-' || h || '-' || g,
                  (%(hosts)s::text[])[h + 1], g,
                  40 + (s %% 17) * 0.25,
                  CASE WHEN s %% 11 = 0 THEN NULL WHEN s = 5 THEN 'NaN'::float8 WHEN s = 6 THEN 'Infinity'
                       WHEN s = 7 THEN '-Infinity' ELSE 100 + s / 3.0 END,
                  1000000 + s * 1234, (s * 7) %% 101, CASE WHEN s %% 13 = 0 THEN NULL ELSE s %% 3 END, 0,
                  CASE WHEN s %% 5 = 0 THEN jsonb_build_object('note', 'a "quoted", text', 'n', s) END
           FROM generate_series(0, 86400 / %(step)s - 1) s, generate_series(0, %(nhosts)s - 1) h,
                generate_series(0, %(gpus)s - 1) g""",
        {"start": datetime(day.year, day.month, day.day, tzinfo=UTC), "step": STEP_S, "hosts": list(HOSTS),
         "nhosts": len(HOSTS), "gpus": GPUS})


@pytest.fixture
def archived(settings: Settings, db: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two expired days and a recent one, ARCHIVE_URL pointing at a fresh directory."""
    for day in (OLDER, OLD, RECENT):
        _fill(db, day)
    root = tmp_path / "archive"
    monkeypatch.setenv("ARCHIVE_URL", str(root))
    get_settings.cache_clear()
    return root


def _archive(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["pipeline", "archive", *args])
    return result.exit_code, result.output


def _rows(db: psycopg.Connection, table: str, day: date) -> list[tuple]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    query = f"SELECT * FROM {table} WHERE time >= %s AND time < %s ORDER BY gpu_uuid, time"
    return [tuple(r.values()) for r in db.execute(query, (start, start + timedelta(days=1)))]


def _same(a: list[tuple], b: list[tuple]) -> bool:
    """Row lists equal, NaN equal to NaN."""
    def norm(v: object) -> object:
        return "NaN" if isinstance(v, float) and math.isnan(v) else v
    return [tuple(map(norm, r)) for r in a] == [tuple(map(norm, r)) for r in b]


def test_retention_keeps_unarchived_days_then_drops_them_once_verified(archived: Path, db) -> None:
    before = maintain(get_settings(), today=TODAY)
    assert before.partitions_dropped == []
    assert set(before.partitions_kept) == {OLDER, OLD}
    assert "not archived yet" in before.partitions_kept[OLD]
    assert archive.day_stats(db, OLD).rows == PER_DAY

    code, out = _archive()
    assert code == 0, out
    assert f"{OLDER}: verified, {PER_DAY:,} samples in 2 file(s)" in out
    records = {r.day: r for r in archive.list_archives(SYSTEM)}
    assert set(records) == {OLDER, OLD}  # the recent day is not due
    record = records[OLD]
    assert record.verified and record.rows == PER_DAY and record.checksum and record.compression_ratio > 1
    assert record.min_time == datetime(OLD.year, OLD.month, OLD.day, tzinfo=UTC)
    assert record.max_time == record.min_time + timedelta(days=1, seconds=-STEP_S)
    assert {f["path"] for f in record.files} == {f"date={OLD}/host=gpu-node-00/data.parquet",
                                                 f"date={OLD}/host=gpu%20node%2F01/data.parquet"}
    assert _archive()[1].startswith("nothing to archive")
    audit = db.execute("SELECT actor, outcome FROM audit_log WHERE area = 'telemetry' AND action = 'archive'")
    assert [tuple(r.values()) for r in audit] == [("system", "ok"), ("system", "ok")]

    after = maintain(get_settings(), today=TODAY)
    assert after.partitions_dropped == [OLDER, OLD] and after.partitions_kept == {}
    assert archive.day_stats(db, OLD).rows == 0 and archive.day_stats(db, RECENT).rows == PER_DAY


def test_files_have_the_table_columns_hourly_row_groups_and_read_in_duckdb_and_pandas(archived: Path, db) -> None:
    assert _archive("--day", str(OLD))[0] == 0
    file = archived / f"date={OLD}" / "host=gpu-node-00" / "data.parquet"
    meta = pq.ParquetFile(file).metadata
    columns = [c.name for c in archive.raw_columns(db)]
    assert pq.read_schema(file).names == columns
    assert meta.num_row_groups == 24 and {meta.row_group(i).num_rows for i in range(24)} == {GPUS * 60}
    assert meta.row_group(0).column(0).compression == "ZSTD"

    dataset = duckdb.sql(f"SELECT host, date, count(*) AS n, min(time) AS lo FROM read_parquet("
                         f"'{archived}/**/*.parquet', hive_partitioning = true) GROUP BY ALL ORDER BY host").fetchall()
    midnight = datetime(OLD.year, OLD.month, OLD.day, tzinfo=UTC)
    assert [(h, d, n) for h, d, n, _ in dataset] == [(h, OLD, PER_DAY // 2) for h in sorted(HOSTS)]
    assert all(lo == midnight for *_, lo in dataset)
    frame = pd.read_parquet(file)
    assert list(frame.columns) == columns and len(frame) == PER_DAY // 2
    assert json.loads(frame["extra"].dropna().iloc[0]) == {"n": 0, "note": 'a "quoted", text'}


def test_a_sample_arriving_after_the_archive_keeps_the_day_until_archived_again(archived: Path, db) -> None:
    assert _archive()[0] == 0
    late = datetime(OLD.year, OLD.month, OLD.day, 12, 0, 30, tzinfo=UTC)
    db.execute("INSERT INTO gpu_metrics (time, gpu_uuid, host, gpu_index) VALUES (%s, 'GPU-late', 'h', 0)", (late,))

    report = maintain(get_settings(), today=TODAY)
    assert report.partitions_dropped == [OLDER]
    assert f"holds {PER_DAY + 1} samples now, its archive {PER_DAY}" in report.partitions_kept[OLD]

    code, out = _archive()
    assert code == 0 and f"{OLD}: verified, {PER_DAY + 1:,} samples in 3 file(s)" in out, out
    assert maintain(get_settings(), today=TODAY).partitions_dropped == [OLD]


def test_a_partial_upload_fails_keeps_the_partition_and_says_why(archived: Path, db) -> None:
    blocker = archived / f"date={OLD}" / "host=gpu-node-00"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")  # the second host's upload cannot land: a half-written day

    code, out = _archive("--day", str(OLD))
    assert code == 1
    assert f"{OLD}: failed, raw rows kept: writing {blocker}/data.parquet failed" in out
    record = archive.archived_day(SYSTEM, OLD)
    assert record.status == "failed" and record.error.startswith(f"writing {blocker}/data.parquet failed: ")
    assert (archived / f"date={OLD}" / "host=gpu%20node%2F01" / "data.parquet").exists()  # the part that landed
    report = maintain(get_settings(), today=TODAY)
    assert OLD not in report.partitions_dropped and "its last archive failed" in report.partitions_kept[OLD]
    assert archive.day_stats(db, OLD).rows == PER_DAY

    blocker.unlink()
    assert _archive("--day", str(OLD))[0] == 0
    assert OLD in maintain(get_settings(), today=TODAY).partitions_dropped


def test_files_the_archive_did_not_write_fail_verification(archived: Path) -> None:
    stray = archived / f"date={OLD}" / "host=elsewhere" / "data.parquet"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"PAR1")
    code, out = _archive("--day", str(OLD))
    assert code == 1 and "holds files this archive did not write (date=" in out and "host=elsewhere" in out


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch) -> Iterator[storage.Client]:
    """gcp-storage-emulator on a free loopback port, with the bucket `telemetry-archive`."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="telemetry-archive")
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    try:
        yield storage.Client(project="test")
    finally:
        server.stop()


def test_gcs_archive_and_restore_through_the_official_client(archived: Path, db, gcs, monkeypatch) -> None:
    monkeypatch.setenv("ARCHIVE_URL", "gs://no-such-bucket/raw")
    get_settings.cache_clear()
    code, out = _archive("--day", str(OLD))
    assert code == 1 and "upload of gs://no-such-bucket/raw/date=" in out and "not found" in out
    assert OLD not in maintain(get_settings(), today=TODAY).partitions_dropped

    monkeypatch.setenv("ARCHIVE_URL", "gs://telemetry-archive/raw")
    get_settings.cache_clear()
    code, out = _archive("--day", str(OLD))
    assert code == 0, out
    names = sorted(b.name for b in gcs.list_blobs("telemetry-archive"))
    assert names == [f"raw/date={OLD}/host=gpu%20node%2F01/data.parquet",
                     f"raw/date={OLD}/host=gpu-node-00/data.parquet"]
    original = _rows(db, "gpu_metrics", OLD)

    assert OLD in maintain(get_settings(), today=TODAY).partitions_dropped
    result = runner.invoke(app, ["pipeline", "archive", "restore", "--day", str(OLD)])
    assert result.exit_code == 0 and f"{PER_DAY:,} samples from 2 file(s) in gpu_metrics_restored" in result.output
    assert _same(_rows(db, "gpu_metrics_restored", OLD), original)


def test_restore_is_idempotent_exact_and_refuses_a_changed_file(archived: Path, db) -> None:
    assert _archive("--day", str(OLD))[0] == 0
    original = _rows(db, "gpu_metrics", OLD)
    assert any(isinstance(v, float) and math.isinf(v) for r in original for v in r)  # the data is as tricky as meant

    first = archive.restore_day(SYSTEM, OLD)
    second = archive.restore_day(SYSTEM, OLD)
    assert first.rows == second.rows == PER_DAY
    assert _same(_rows(db, "gpu_metrics_restored", OLD), original)

    with pytest.raises(NotFound, match=f"{RECENT} has no archive"):
        archive.restore_day(SYSTEM, RECENT)
    file = archived / f"date={OLD}" / "host=gpu-node-00" / "data.parquet"
    file.write_bytes(file.read_bytes()[:-1] + b"!")
    with pytest.raises(archive.ArchiveFailed, match="different SHA-256"):
        archive.restore_day(SYSTEM, OLD)
    assert _same(_rows(db, "gpu_metrics_restored", OLD), original)  # a refused restore changed nothing


def test_only_admins_archive_or_restore_and_failed_days_do_not_restore(archived: Path, db) -> None:
    viewer = Principal("victor", Role.viewer)
    with pytest.raises(PermissionDenied):
        archive.pending_days(viewer)
    with pytest.raises(PermissionDenied):
        archive.restore_day(Principal("oscar", Role.operator), OLD)
    assert archive.list_archives(viewer) == []
    (archived / f"date={OLD}" / "stray").mkdir(parents=True)
    (archived / f"date={OLD}" / "stray" / "x").write_text("x")
    assert _archive("--day", str(OLD))[0] == 1
    with pytest.raises(Conflict, match="did not verify"):
        archive.restore_day(SYSTEM, OLD)


def test_archive_settings_errors_are_one_line(settings: Settings, db, monkeypatch) -> None:
    code, out = _archive()
    assert code == 2 and "ARCHIVE_URL is not set" in out
    monkeypatch.setenv("ARCHIVE_URL", "s3://bucket/x")
    get_settings.cache_clear()
    code, out = _archive()
    assert code == 2 and "only a directory, file:// or gs:// is supported" in out
    code, out = _archive("--day", "yesterday")
    assert code == 2 and "is not a date" in out


def test_pipeline_page_lists_archived_days_with_size_and_ratio(archived: Path, kafka_settings: Settings, db) -> None:
    assert _archive()[0] == 0
    users.add_user(db, SYSTEM, "victor", Role.viewer, "correct-horse-battery")
    at = AppTest.from_file(MAIN, default_timeout=90)
    at.session_state["principal"] = Principal("victor", Role.viewer)
    at.run()
    at.switch_page("../pages/pipeline.py").run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Days archived"] == "2" and metrics["Compression"].endswith("×")
    table = next(df.value for df in at.dataframe if "archive MiB" in df.value.columns)
    assert list(table["day"]) == [OLD, OLDER] and set(table["status"]) == {"verified"}
    assert (table["ratio"] > 1).all() and (table["samples"] == PER_DAY).all()


def test_timescaledb_retention_drops_only_archived_day_chunks(timescale_server: str, tmp_path, monkeypatch) -> None:
    """The timescaledb profile: no raw retention policy while archiving is on; `maintain` drops a day's chunk
    only once that day is archived and verified."""
    monkeypatch.setenv("DATABASE_URL", timescale_server)
    monkeypatch.setenv("ARCHIVE_URL", str(tmp_path / "archive"))
    get_settings.cache_clear()
    start = datetime(OLD.year, OLD.month, OLD.day, tzinfo=UTC)
    with psycopg.connect(timescale_server, autocommit=True, row_factory=dict_row) as conn:
        for day_start in (start, start - timedelta(days=4)):
            conn.execute("INSERT INTO gpu_metrics (time, gpu_uuid, host, gpu_index, gpu_temp) SELECT %s + "
                         "make_interval(mins => m), 'GPU-ts', 'ts-host', 0, 40 + m %% 7 FROM generate_series(0, 59) m",
                         (day_start,))
    report = maintain(get_settings(), today=TODAY)
    assert "gpu_metrics" not in report.policies and report.partitions_dropped == []
    assert set(report.partitions_kept) == {OLD, OLDER}

    (record,) = archive.archive_days(SYSTEM, archive.pending_days(SYSTEM, day=OLD))
    assert record.verified and record.rows == 60, record.error
    report = maintain(get_settings(), today=TODAY)
    assert report.partitions_dropped == [OLD] and set(report.partitions_kept) == {OLDER}
    with psycopg.connect(timescale_server, autocommit=True, row_factory=dict_row) as conn:
        assert archive.day_stats(conn, OLD).rows == 0 and archive.day_stats(conn, OLDER).rows == 60
        jobs = conn.execute("SELECT count(*) AS n FROM timescaledb_information.jobs WHERE proc_name = "
                            "'policy_retention' AND hypertable_name = 'gpu_metrics'").fetchone()
        assert jobs["n"] == 0
