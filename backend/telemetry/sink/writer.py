"""The one `write(batch)` seam between the sink and the database.

postgres profile: binary COPY straight into `gpu_metrics`; in the same transaction the minutes and hours of the rows
are listed as pending rollup buckets and their materialized rollup rows deleted, under the buckets' shared locks
(`rollups.py`); the rollup worker recomputes them later, off this path. A COPY that meets a row already stored (a
replay after a crash or a rebalance) fails as a whole and is undone to a savepoint; the batch then goes through a
temporary stage and `INSERT … SELECT … ON CONFLICT DO NOTHING`, which invalidates only the minutes of rows it
inserted. Replays come in runs, so after a batch with duplicates the next one starts on the stage. timescaledb
profile, and `--insert`: always the stage (filled with INSERT where COPY is unavailable: the WebAssembly TimescaleDB
used in tests), and no invalidation (continuous aggregates) beyond marking the hours written to for the precomputed
GPU-minutes (`gpu_minutes.py`; the postgres profile marks them with the rollup invalidation). The `gpus` inventory
and token usage commit in the same transaction as the raw rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

import psycopg
from psycopg.types.json import Jsonb

from backend.config import Settings
from backend.db import connect
from backend.db.migrate import profile_of
from backend.errors import ConfigError
from backend.telemetry.fields import FIELDS
from backend.telemetry.gpu_minutes import mark_dirty
from backend.telemetry.sink.batch import METRIC_COLUMNS, TOKEN_COLUMNS, Batch, days_of
from backend.telemetry.sink.partitions import ensure_partitions
from backend.telemetry.sink.rollups import invalidate, lock_shared

log = logging.getLogger(__name__)

_MAX_PARAMS = 32767  # bind parameters per statement (the protocol allows 65535)
_PG_TYPES = {"double precision": "float8", "bigint": "int8"}
METRIC_TYPES = ("timestamptz", "text", "text", "int2", *(_PG_TYPES[f.sql_type] for f in FIELDS), "jsonb")
TOKEN_TYPES = ("timestamptz", "text", "text", "text", "float8", "int8", "int8", "int8", "float8", "float8", "jsonb")

_GPUS_UPSERT = """
INSERT INTO gpus AS g (gpu_uuid, host, gpu_index, model, driver, labels, first_seen, last_seen)
SELECT * FROM unnest(%b::text[], %b::text[], %b::int2[], %b::text[], %b::text[], %b::jsonb[],
                     %b::timestamptz[], %b::timestamptz[])
ON CONFLICT (gpu_uuid) DO UPDATE SET
    first_seen = least(g.first_seen, excluded.first_seen),
    last_seen = greatest(g.last_seen, excluded.last_seen),
    host = CASE WHEN excluded.last_seen >= g.last_seen THEN excluded.host ELSE g.host END,
    gpu_index = CASE WHEN excluded.last_seen >= g.last_seen THEN excluded.gpu_index ELSE g.gpu_index END,
    model = CASE WHEN excluded.last_seen >= g.last_seen THEN coalesce(excluded.model, g.model) ELSE g.model END,
    driver = CASE WHEN excluded.last_seen >= g.last_seen THEN coalesce(excluded.driver, g.driver) ELSE g.driver END,
    labels = CASE WHEN excluded.last_seen >= g.last_seen THEN excluded.labels ELSE g.labels END
"""


def _move(stage: str, table: str, columns: tuple[str, ...]) -> str:
    cols = ", ".join(columns)
    return f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT DO NOTHING"


def _counted(insert: str) -> str:
    return f"WITH inserted AS ({insert} RETURNING 1) SELECT count(*) AS inserted FROM inserted"


def _counted_and_marked(insert: str) -> str:
    """The insert, returning one row `inserted`, and the hours of the rows it inserted marked as written to."""
    return (f"WITH inserted AS ({insert} RETURNING time), dirty AS ({mark_dirty('inserted', 'time')}) "
            "SELECT count(*) AS inserted FROM inserted")


def _counted_and_invalidated(insert: str) -> str:
    """The insert, returning one row `inserted`, and the minutes of the rows it inserted invalidated."""
    return (f"WITH inserted AS ({insert} RETURNING time), "
            "mins AS (SELECT DISTINCT date_trunc('minute', time, 'UTC') AS b FROM inserted), "
            f"{', '.join(invalidate('mins'))} SELECT count(*) AS inserted FROM inserted")


_COPY_METRICS = f"COPY gpu_metrics ({', '.join(METRIC_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_MINUTES = "mins AS (SELECT to_timestamp(x * 60) AS b FROM unnest(%(minutes)b::int8[]) x)"
_LOCK = f"WITH {_MINUTES} {lock_shared('mins')}"
_INVALIDATE = f"WITH {_MINUTES}, {', '.join(invalidate('mins'))} SELECT 1"


@dataclass(frozen=True)
class WriteResult:
    metrics_inserted: int
    metrics_duplicates: int
    tokens_inserted: int
    tokens_duplicates: int


class PostgresWriter:
    """Writes batches over one connection, reconnecting after failures. `use_copy=False` fills the stage with
    INSERTs (for servers without COPY). `profile`: the database's, once connected (None before)."""

    def __init__(self, settings: Settings, *, use_copy: bool = True) -> None:
        self._settings = settings
        self._use_copy = use_copy
        self._conn: psycopg.Connection | None = None
        self.profile: str | None = None
        self._replaying = False  # the last batch met stored rows: start the next one on the stage
        self._known_days: set = set()
        self._metrics_sql = ""
        self._tokens_sql = _counted(_move("_stage_tokens", "token_usage", TOKEN_COLUMNS))

    def _connection(self) -> psycopg.Connection:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        # A few large statements per batch: server-side preparing buys nothing, and servers that share one
        # session between connections (PGlite) would see clashing statement names.
        conn = connect(self._settings, autocommit=True, prepare_threshold=None)
        try:
            self.profile = profile_of(conn)
        except RuntimeError as exc:  # not migrated: a setup mistake, not an outage to wait out
            conn.close()
            raise ConfigError(str(exc)) from None
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS _stage_metrics (LIKE gpu_metrics) ON COMMIT DELETE ROWS")
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS _stage_tokens (LIKE token_usage) ON COMMIT DELETE ROWS")
        move = _move("_stage_metrics", "gpu_metrics", METRIC_COLUMNS)
        self._metrics_sql = _counted_and_invalidated(move) if self.profile == "postgres" else _counted_and_marked(move)
        self._known_days = set()
        self._conn = conn
        return conn

    def warm_up(self, days: set[date]) -> None:
        """Connect and create the partitions of `days` ahead of the first batch (the sink does this while it joins
        its consumer group, so the first rows land sooner); a failure here is left for the first write to meet."""
        try:
            conn = self._connection()
            if self.profile == "postgres":
                self._ensure_days(conn, days)
        except (psycopg.Error, ConfigError) as exc:
            log.debug("writer warm-up failed (%s); the first write will try again", exc)

    def write(self, batch: Batch) -> WriteResult:
        """Store the batch in one transaction; raises psycopg errors (the caller retries or isolates)."""
        try:
            return self._write(batch)
        except psycopg.errors.CheckViolation:
            self._known_days.clear()  # a partition vanished (retention ran): look again next time
            raise
        except psycopg.Error:
            if self._conn is not None and (self._conn.closed or self._conn.broken):
                self.close()
            raise

    def _ensure_days(self, conn: psycopg.Connection, days: set[date]) -> None:
        if not days <= self._known_days:
            ensure_partitions(conn, days - self._known_days)
            self._known_days |= days

    def _write(self, batch: Batch) -> WriteResult:
        conn = self._connection()
        minutes = batch.minutes() if self.profile == "postgres" else set()
        if minutes:
            self._ensure_days(conn, days_of(minutes))
        metrics = tokens = 0
        with conn.transaction(), conn.cursor() as cur:
            if batch.metric_rows:
                metrics = self._store_metrics(cur, batch, minutes)
                self._upsert_gpus(cur, batch)
            if batch.token_rows:
                self._fill(cur, "_stage_tokens", TOKEN_COLUMNS, TOKEN_TYPES, batch.token_rows)
                tokens = cur.execute(self._tokens_sql).fetchone()["inserted"]
        return WriteResult(metrics, len(batch.metric_rows) - metrics, tokens, len(batch.token_rows) - tokens)

    def _store_metrics(self, cur: psycopg.Cursor, batch: Batch, minutes: set[int]) -> int:
        """Raw rows (and, postgres profile, their rollup buckets invalidated); returns how many were new."""
        if minutes:
            cur.execute(_LOCK, {"minutes": sorted(minutes)})
            if self._use_copy and not self._replaying:
                try:
                    with cur.connection.transaction():  # a savepoint: a stored row undoes only the COPY
                        self._copy(cur, _COPY_METRICS, METRIC_TYPES, batch.metric_rows)
                    cur.execute(_INVALIDATE, {"minutes": sorted(minutes)})
                    return len(batch.metric_rows)
                except psycopg.errors.UniqueViolation:
                    log.info("batch holds rows already stored (a replay): inserting it with ON CONFLICT DO NOTHING")
        self._fill(cur, "_stage_metrics", METRIC_COLUMNS, METRIC_TYPES, batch.metric_rows)
        inserted = cur.execute(self._metrics_sql).fetchone()["inserted"]
        self._replaying = inserted < len(batch.metric_rows)
        return inserted

    @staticmethod
    def _copy(cur: psycopg.Cursor, statement: str, types: tuple[str, ...], rows: list[tuple]) -> None:
        with cur.copy(statement) as copy:
            copy.set_types(list(types))
            for row in rows:
                copy.write_row(row)

    def _fill(self, cur: psycopg.Cursor, stage: str, columns: tuple[str, ...], types: tuple[str, ...],
              rows: list[tuple]) -> None:
        cols = ", ".join(columns)
        if not self._use_copy:
            # multi-row VALUES, not executemany: its pipelined messages crash the WebAssembly server
            placeholder = f"({', '.join(['%s'] * len(columns))})"
            step = _MAX_PARAMS // len(columns)
            for start in range(0, len(rows), step):
                chunk = rows[start:start + step]
                cur.execute(f"INSERT INTO {stage} ({cols}) VALUES {', '.join([placeholder] * len(chunk))}",
                            [value for row in chunk for value in row])
            return
        self._copy(cur, f"COPY {stage} ({cols}) FROM STDIN (FORMAT BINARY)", types, rows)

    @staticmethod
    def _upsert_gpus(cur: psycopg.Cursor, batch: Batch) -> None:
        """Binary parameters (%b): psycopg's text array dumping quotes element by element in Python, 2× slower."""
        uuids = sorted(batch.gpus)  # a fixed lock order: concurrent sinks never deadlock on the inventory
        seen = [batch.gpus[u] for u in uuids]
        cur.execute(_GPUS_UPSERT, (
            uuids, [s.host for s in seen], [s.gpu_index for s in seen], [s.model for s in seen],
            [s.driver for s in seen], [Jsonb(s.labels) for s in seen], [s.first_seen for s in seen],
            [s.last_seen for s in seen]))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
