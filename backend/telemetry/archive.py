"""The Parquet archive of raw telemetry: export each day before retention drops it, verify it, restore it on demand.

Layout under ARCHIVE_URL (a directory, or gs://BUCKET/PREFIX through archive_gcs.py):
`date=YYYY-MM-DD/host=HOST/data.parquet` (hive partitioning, the host URL-quoted), zstd, the columns of
`gpu_metrics` in table order, rows sorted by hour, GPU and time with one row group per hour of the host's day — a
row group per GPU-hour (360 samples at 10 s) made the files 1.6× larger (bench/bench_archive.py). DuckDB, pyarrow
and pandas read the files as they are.

A day counts as archived only when every file was read back from the target and matched what was exported: the
SHA-256 of its bytes, the decoded rows, and the row count and first/last sample the database reported in the same
snapshot. Only then is it recorded as verified in `archives`, and retention (sink/partitions.py) drops a day only
while it still holds exactly the rows recorded there. A failed or partial upload is recorded as failed, with why,
and the day stays in the database.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from psycopg import sql
from psycopg.types.json import Jsonb

from backend import audit
from backend.config import Settings, get_settings
from backend.db import connect
from backend.errors import ConfigError, Conflict, NotFound, PlatformError, Unavailable
from backend.identity import Principal, Role, require_role

log = logging.getLogger(__name__)

FILE_NAME = "data.parquet"
STAGING_TABLE = "gpu_metrics_restored"
_ARROW_TYPES: dict[str, pa.DataType] = {
    "timestamp with time zone": pa.timestamp("us", tz="UTC"), "text": pa.string(), "smallint": pa.int16(),
    "integer": pa.int32(), "bigint": pa.int64(), "double precision": pa.float64(), "real": pa.float32(),
    "boolean": pa.bool_(), "jsonb": pa.string(), "json": pa.string(),
}
# CSV is the fast lane between PostgreSQL and Arrow both ways (COPY on one side, Arrow's C++ parser on the other).
# Unquoted empty = NULL, quoted "" = empty string, exactly as COPY writes and reads them; nothing else is NULL (Arrow
# would read `NaN`, `NULL` or `NA` as NULL by default).
_CSV_IN = {"null_values": [""], "strings_can_be_null": True, "quoted_strings_can_be_null": False}

Advance = Callable[[int], None]


class ArchiveFailed(Unavailable):
    """An export, upload or read-back did not verify; the day's rows stay where they are."""


# --- targets ----------------------------------------------------------------------------------------------------

class ArchiveTarget(Protocol):
    url: str

    def write(self, path: str, data: bytes) -> None: ...
    def read(self, path: str) -> bytes: ...
    def list(self, prefix: str) -> list[str]: ...


@contextmanager
def _os_errors(what: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise ArchiveFailed(f"{what} failed: {exc.strerror or exc}") from None


class LocalTarget:
    """Files under a directory; each write lands whole (temporary file, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"{root}/"

    def write(self, path: str, data: bytes) -> None:
        dest = self.root / path
        temporary = dest.with_name(f".{dest.name}.tmp")
        with _os_errors(f"writing {dest}"):
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(temporary, "wb") as out:
                    out.write(data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, dest)
            finally:
                temporary.unlink(missing_ok=True)

    def read(self, path: str) -> bytes:
        with _os_errors(f"reading {self.root / path}"):
            return (self.root / path).read_bytes()

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        with _os_errors(f"listing {base}"):
            if not base.is_dir():
                return []
            return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file())


def open_target(url: str | None, settings: Settings) -> ArchiveTarget:
    """The target named by an archive URL: a directory (`/path`, `file:///path`) or `gs://BUCKET/PREFIX`."""
    if not url:
        raise ConfigError("ARCHIVE_URL is not set: name a directory or gs://BUCKET/PREFIX to archive to")
    if url.startswith("gs://"):
        bucket, _, prefix = url.removeprefix("gs://").partition("/")
        if not bucket:
            raise ConfigError(f"ARCHIVE_URL {url!r} names no bucket: use gs://BUCKET/PREFIX")
        from backend.telemetry.archive_gcs import GcsTarget  # the Google client loads only when used

        return GcsTarget(bucket, prefix, settings.gcp_project_id)
    if "://" in url and not url.startswith("file://"):
        raise ConfigError(f"ARCHIVE_URL {url!r}: only a directory, file:// or gs:// is supported")
    return LocalTarget(Path(url.removeprefix("file://")).resolve())


# --- schema -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPES[self.pg_type]

    @property
    def select(self) -> sql.Composable:
        """The column as COPY should print it for Arrow: UTC ISO timestamps, JSON as its text."""
        ident = sql.Identifier(self.name)
        if self.pg_type == "timestamp with time zone":
            return sql.SQL("""to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS {}""").format(
                ident, ident)
        if self.pg_type in ("json", "jsonb"):
            return sql.SQL("{}::text AS {}").format(ident, ident)
        return ident


def raw_columns(conn: psycopg.Connection, table: str = "gpu_metrics") -> list[Column]:
    """The table's columns in order; the archive follows the schema as migrations change it."""
    rows = conn.execute(
        "SELECT column_name AS name, data_type AS type FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position", (table,)).fetchall()
    unknown = [f"{r['name']} ({r['type']})" for r in rows if r["type"] not in _ARROW_TYPES]
    if unknown:
        raise ConfigError(f"{table} has columns the archive cannot write: {', '.join(unknown)}")
    return [Column(r["name"], r["type"]) for r in rows]


def arrow_schema(columns: list[Column]) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.arrow_type) for c in columns])


# --- what the database holds ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DayStats:
    day: date
    rows: int
    min_time: datetime | None
    max_time: datetime | None


def _bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def day_stats(conn: psycopg.Connection, day: date) -> DayStats:
    row = conn.execute("SELECT count(*) AS n, min(time) AS lo, max(time) AS hi FROM gpu_metrics "
                       "WHERE time >= %s AND time < %s", _bounds(day)).fetchone()
    return DayStats(day, row["n"], row["lo"], row["hi"])


def days_with_data(conn: psycopg.Connection, before: date) -> list[date]:
    """UTC days before `before` that hold raw samples (one index probe per day, no scan of the rows)."""
    first = conn.execute("SELECT min(time) AS t FROM gpu_metrics").fetchone()["t"]
    if first is None:
        return []
    rows = conn.execute(
        "SELECT d::date AS day FROM generate_series(%s::timestamp, %s::timestamp - interval '1 day', "
        "interval '1 day') AS d WHERE EXISTS (SELECT 1 FROM gpu_metrics WHERE time >= d AT TIME ZONE 'UTC' "
        "AND time < (d + interval '1 day') AT TIME ZONE 'UTC')", (first.astimezone(UTC).date(), before)).fetchall()
    return [r["day"] for r in rows]


# --- the archives table -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ArchivedDay:
    day: date
    status: str
    target: str
    rows: int
    min_time: datetime | None
    max_time: datetime | None
    checksum: str | None
    bytes: int
    raw_bytes: int
    files: list[dict[str, Any]]
    error: str | None
    duration_s: float
    archived_at: datetime
    actor: str

    @property
    def verified(self) -> bool:
        return self.status == "verified"

    @property
    def compression_ratio(self) -> float | None:
        """Raw row bytes in PostgreSQL per archived byte."""
        return self.raw_bytes / self.bytes if self.bytes else None

    @property
    def bytes_per_sample(self) -> float | None:
        return self.bytes / self.rows if self.rows else None

    def holds(self, stats: DayStats) -> bool:
        """Whether this verified archive has exactly the rows the database holds for the day now."""
        return self.verified and (self.rows, self.min_time, self.max_time) == (stats.rows, stats.min_time,
                                                                                stats.max_time)


_FIELDS = ("day", "status", "target", "rows", "min_time", "max_time", "checksum", "bytes", "raw_bytes", "files",
           "error", "duration_s", "archived_at", "actor")


def _record_of(conn: psycopg.Connection, day: date) -> ArchivedDay | None:
    row = conn.execute(f"SELECT {', '.join(_FIELDS)} FROM archives WHERE day = %s", (day,)).fetchone()
    return ArchivedDay(**row) if row else None


def _save(conn: psycopg.Connection, record: ArchivedDay) -> None:
    values = {name: getattr(record, name) for name in _FIELDS} | {"files": Jsonb(record.files)}
    conn.execute(
        sql.SQL("INSERT INTO archives ({}) VALUES ({}) ON CONFLICT (day) DO UPDATE SET {}").format(
            sql.SQL(", ").join(map(sql.Identifier, _FIELDS)),
            sql.SQL(", ").join(sql.Placeholder(n) for n in _FIELDS),
            sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in _FIELDS[1:])),
        values)


def list_archives(principal: Principal, settings: Settings | None = None, limit: int = 400) -> list[ArchivedDay]:
    """Archived days, newest first (the Pipeline page, `pipeline archive list`)."""
    require_role(principal, Role.viewer, "view the archive")
    with connect(settings or get_settings(), autocommit=True) as conn:
        rows = conn.execute(f"SELECT {', '.join(_FIELDS)} FROM archives ORDER BY day DESC LIMIT %s",
                            (limit,)).fetchall()
    return [ArchivedDay(**row) for row in rows]


@dataclass(frozen=True)
class ArchiveOverview:
    """What the Pipeline page shows: whether archiving is on, where to, and the archived days (newest first)."""

    target: str | None
    days: list[ArchivedDay]

    @property
    def enabled(self) -> bool:
        return self.target is not None


def overview(principal: Principal, settings: Settings | None = None) -> ArchiveOverview:
    settings = settings or get_settings()
    return ArchiveOverview(settings.archive_url, list_archives(principal, settings))


def archived_day(principal: Principal, day: date, settings: Settings | None = None) -> ArchivedDay:
    """One day's archive record; NotFound when the day was never archived."""
    require_role(principal, Role.viewer, "view the archive")
    with connect(settings or get_settings(), autocommit=True) as conn:
        record = _record_of(conn, day)
    if record is None:
        raise NotFound(f"{day} has no archive (see `stream-platform pipeline archive list`)")
    return record


# --- retention's question ---------------------------------------------------------------------------------------

@dataclass
class RetentionGuard:
    """May this day's raw rows go? Only with a verified archive of exactly the rows the day holds now. Call it with
    writers locked out of the day (partitions.py does), so the answer still holds when the drop happens."""

    refused: dict[date, str] = field(default_factory=dict)

    def __call__(self, conn: psycopg.Connection, day: date) -> bool:
        stats = day_stats(conn, day)
        if stats.rows == 0:
            return True
        record = _record_of(conn, day)
        if record is None:
            reason = "not archived yet: run `stream-platform pipeline archive`"
        elif not record.verified:
            reason = f"its last archive failed ({record.error}): run `stream-platform pipeline archive` again"
        elif not record.holds(stats):
            reason = (f"it holds {stats.rows} samples now, its archive {record.rows}: run "
                      "`stream-platform pipeline archive` again")
        else:
            return True
        self.refused[day] = reason
        log.warning("kept raw samples of %s: %s", day, reason)
        return False


def retention_guard(settings: Settings) -> RetentionGuard | None:
    """The guard retention must pass while archiving is on (ARCHIVE_URL set); None when it is off."""
    return RetentionGuard() if settings.archive_url else None


# --- export -----------------------------------------------------------------------------------------------------

def pending_days(principal: Principal, settings: Settings | None = None, day: date | None = None,
                 today: date | None = None) -> list[DayStats]:
    """The days to archive: `day` alone when given, else every day older than RETENTION_RAW_DAYS whose raw rows
    have no verified archive that still matches them."""
    require_role(principal, Role.admin, "archive telemetry")
    settings = settings or get_settings()
    open_target(settings.archive_url, settings)  # a wrong ARCHIVE_URL says so before any work
    with connect(settings, autocommit=True) as conn:
        if day is not None:
            stats = day_stats(conn, day)
            if not stats.rows:
                raise NotFound(f"no raw samples on {day} (already dropped, or never received)")
            return [stats]
        cutoff = (today or datetime.now(UTC).date()) - timedelta(days=settings.retention_raw_days)
        due = []
        for candidate in days_with_data(conn, cutoff):
            stats, record = day_stats(conn, candidate), _record_of(conn, candidate)
            if record is None or not record.holds(stats):
                due.append(stats)
        return due


def day_prefix(day: date) -> str:
    return f"date={day.isoformat()}/"


def file_path(day: date, host: str) -> str:
    return f"{day_prefix(day)}host={quote(host, safe='')}/{FILE_NAME}"


def _export(conn: psycopg.Connection, columns: list[Column], day: date, host: str) -> pa.Table:
    start, end = _bounds(day)
    query = sql.SQL(
        "COPY (SELECT {} FROM gpu_metrics WHERE time >= {} AND time < {} AND host = {} "
        "ORDER BY date_trunc('hour', time AT TIME ZONE 'UTC'), gpu_uuid, time) TO STDOUT (FORMAT csv, HEADER)"
    ).format(sql.SQL(", ").join(c.select for c in columns), sql.Literal(start), sql.Literal(end), sql.Literal(host))
    with conn.cursor().copy(query) as copy:
        data = b"".join(copy)
    schema = arrow_schema(columns)
    table = pacsv.read_csv(pa.py_buffer(data), convert_options=pacsv.ConvertOptions(
        column_types={f.name: f.type for f in schema}, **_CSV_IN))
    return table.select(schema.names).cast(schema)


def _host_stats(columns: list[Column]) -> sql.Composed:
    """Per host: rows, first/last sample, raw row bytes and each column's non-NULL count, to check the export by."""
    counts = sql.SQL(", ").join(sql.SQL("count({}) AS {}").format(sql.Identifier(c.name), sql.Identifier(f"n_{i}"))
                                for i, c in enumerate(columns))
    return sql.SQL("SELECT host, count(*) AS rows, min(time) AS lo, max(time) AS hi, sum(pg_column_size(g.*)) AS raw, "
                   "{} FROM gpu_metrics g WHERE time >= %s AND time < %s GROUP BY host ORDER BY host").format(counts)


def _check_export(table: pa.Table, host: dict[str, Any], columns: list[Column], day: date) -> None:
    """The exported rows against the database's own numbers for them: a value the conversion lost (e.g. NaN read as
    NULL) changes a column's non-NULL count."""
    differs = [c.name for i, c in enumerate(columns) if len(table[c.name]) - table[c.name].null_count != host[f"n_{i}"]]
    if (table.num_rows, pc.min(table["time"]).as_py(), pc.max(table["time"]).as_py()) != (
            host["rows"], host["lo"], host["hi"]) or differs:
        raise ArchiveFailed(f"the export of {day} / {host['host']} does not match the database's count, time range "
                            f"or non-NULL values ({', '.join(differs) or 'rows'})")


def to_parquet(table: pa.Table) -> bytes:
    """zstd Parquet with one row group per hour (the table is sorted by hour first)."""
    hours = pc.floor_temporal(table["time"], unit="hour").cast(pa.int64()).to_numpy()
    cuts = [0, *(np.flatnonzero(np.diff(hours)) + 1).tolist(), len(hours)]
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, table.schema, compression="zstd") as writer:
        for start, stop in itertools.pairwise(cuts):
            writer.write_table(table.slice(start, stop - start), row_group_size=stop - start)
    return sink.getvalue().to_pybytes()


def _read_back(target: ArchiveTarget, path: str, sha256: str) -> pa.Table:
    data = target.read(path)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ArchiveFailed(f"{target.url}{path} read back with a different SHA-256 than was written")
    return pq.read_table(pa.BufferReader(data))


def same_rows(a: pa.Table, b: pa.Table) -> bool:
    """`Table.equals`, except that NaN equals NaN (Arrow's equality says it does not)."""
    if a.schema != b.schema or a.num_rows != b.num_rows:
        return False
    for name in a.schema.names:
        x, y = a[name], b[name]
        if pa.types.is_floating(x.type):
            nan_x, nan_y = pc.is_nan(x), pc.is_nan(y)
            if not nan_x.equals(nan_y):
                return False
            x, y = pc.if_else(nan_x, 0.0, x), pc.if_else(nan_y, 0.0, y)
        if not x.equals(y):
            return False
    return True


def _day_checksum(files: list[dict[str, Any]]) -> str:
    return hashlib.sha256("".join(f"{f['path']} {f['sha256']}\n" for f in files).encode()).hexdigest()


def _archive_day(conn: psycopg.Connection, target: ArchiveTarget, columns: list[Column], day: date,
                 advance: Advance) -> ArchivedDay:
    """Export, upload and verify one day inside one snapshot; raises on anything that does not match."""
    files: list[dict[str, Any]] = []
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        hosts = conn.execute(_host_stats(columns), _bounds(day)).fetchall()
        for host in hosts:
            table = _export(conn, columns, day, host["host"])
            _check_export(table, host, columns, day)
            data = to_parquet(table)
            entry = {"path": file_path(day, host["host"]), "host": host["host"], "rows": host["rows"],
                     "bytes": len(data), "raw_bytes": int(host["raw"]), "sha256": hashlib.sha256(data).hexdigest()}
            target.write(entry["path"], data)
            if not same_rows(_read_back(target, entry["path"], entry["sha256"]), table):
                raise ArchiveFailed(f"{target.url}{entry['path']} decodes to other rows than were exported")
            files.append(entry)
            advance(host["rows"])
    present = target.list(day_prefix(day))
    if present != sorted(f["path"] for f in files):
        unexpected = sorted(set(present) - {f["path"] for f in files})
        raise ArchiveFailed(f"{target.url}{day_prefix(day)} holds files this archive did not write "
                            f"({', '.join(unexpected) or 'some are missing'}): move them away and archive again")
    return ArchivedDay(
        day=day, status="verified", target=target.url, rows=sum(f["rows"] for f in files),
        min_time=min(h["lo"] for h in hosts), max_time=max(h["hi"] for h in hosts), checksum=_day_checksum(files),
        bytes=sum(f["bytes"] for f in files), raw_bytes=sum(f["raw_bytes"] for f in files), files=files, error=None,
        duration_s=0.0, archived_at=datetime.now(UTC), actor="")


def archive_days(principal: Principal, days: list[DayStats], settings: Settings | None = None,
                 advance: Advance | None = None) -> list[ArchivedDay]:
    """Archive each day and record the outcome in `archives` (verified, or failed with why) and the audit log.
    A failed day does not stop the others."""
    require_role(principal, Role.admin, "archive telemetry")
    settings = settings or get_settings()
    target = open_target(settings.archive_url, settings)
    results = []
    with connect(settings, autocommit=True) as conn:
        columns = raw_columns(conn)
        for stats in days:
            started = time.monotonic()
            try:
                record = _archive_day(conn, target, columns, stats.day, advance or (lambda _n: None))
            except (PlatformError, OSError, pa.ArrowException) as exc:
                record = ArchivedDay(stats.day, "failed", target.url, 0, None, None, None, 0, 0, [], str(exc), 0.0,
                                     datetime.now(UTC), "")
            record = replace(record, duration_s=round(time.monotonic() - started, 3), actor=principal.name)
            with conn.transaction():
                _save(conn, record)
                audit.record(conn, actor=principal.name, area="telemetry", action="archive",
                             target=stats.day.isoformat(), outcome="ok" if record.verified else "error",
                             detail={"rows": record.rows, "bytes": record.bytes, "target": record.target,
                                     "error": record.error})
            log.info("archive of %s: %s", stats.day, record.status if record.verified else record.error)
            results.append(record)
    return results


# --- restore ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RestoreReport:
    day: date
    table: str
    rows: int
    files: int
    seconds: float

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def restore_day(principal: Principal, day: date, settings: Settings | None = None,
                advance: Advance | None = None) -> RestoreReport:
    """Load a verified archived day into `gpu_metrics_restored`, replacing whatever that table held for the day (so
    running it twice leaves the same rows). Each file must still match its recorded SHA-256 and row count."""
    require_role(principal, Role.admin, "restore archived telemetry")
    settings = settings or get_settings()
    started = time.monotonic()
    record = archived_day(principal, day, settings)
    with connect(settings, autocommit=True) as conn:
        if not record.verified:
            raise Conflict(f"the archive of {day} did not verify ({record.error}); there is nothing to restore")
        target = open_target(record.target, settings)
        staging = {c.name for c in raw_columns(conn, STAGING_TABLE)}
        tables = []
        for entry in record.files:
            table = _read_back(target, entry["path"], entry["sha256"])
            if table.num_rows != entry["rows"]:
                raise ArchiveFailed(f"{target.url}{entry['path']} holds {table.num_rows} rows, "
                                    f"{entry['rows']} were archived")
            missing = [name for name in table.schema.names if name not in staging]
            if missing:
                raise Conflict(f"{STAGING_TABLE} lacks the archived columns {', '.join(missing)}: add them with a "
                               "migration (docs/telemetry.md, 'Adding a field')")
            tables.append(table)
        with conn.transaction():
            conn.execute(sql.SQL("DELETE FROM {} WHERE time >= %s AND time < %s").format(
                sql.Identifier(STAGING_TABLE)), _bounds(day))
            for table in tables:
                _copy_in(conn, table)
                (advance or (lambda _n: None))(table.num_rows)
            audit.record(conn, actor=principal.name, area="telemetry", action="restore", target=day.isoformat(),
                         outcome="ok", detail={"rows": record.rows, "table": STAGING_TABLE})
    return RestoreReport(day, STAGING_TABLE, sum(t.num_rows for t in tables), len(tables),
                         time.monotonic() - started)


def _copy_in(conn: psycopg.Connection, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink)
    query = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, HEADER)").format(
        sql.Identifier(STAGING_TABLE), sql.SQL(", ").join(map(sql.Identifier, table.schema.names)))
    with conn.cursor().copy(query) as copy:
        copy.write(sink.getvalue().to_pybytes())
