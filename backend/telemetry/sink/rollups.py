"""SQL for the postgres profile's rollups `gpu_metrics_1m` / `gpu_metrics_1h`, kept off the sink's hot transaction.

A bucket (a minute or an hour) is either **pending** — listed in `gpu_metrics_1m_pending` / `_1h_pending`, with no
state rows — or **materialized** — its rows in `gpu_metrics_1m_state` / `_1h_state`, not listed. Never both:
- a sink, in the transaction that stores raw rows, lists their minutes and hours as pending and deletes whatever
  state rows those buckets had (an invalidation log, as TimescaleDB's continuous aggregates keep);
- the rollup worker (`rollup_worker.py`) recomputes a complete pending minute from raw rows, or a complete pending
  hour from the exact minutes, into the state table and unlists it, in one transaction.
Each bucket has an advisory lock: sinks take it shared while invalidating (they never wait for each other), the
worker takes it exclusively with a try-lock and skips buckets a sink is writing to, so neither can interleave with
the other on the same bucket. Lock keys wrap around (LOCK_SLOTS) so a batch spanning days takes a bounded number of
locks; two buckets sharing a slot only share the waiting, never the data.

The views (migration 0110) are then a plain UNION ALL: every state row, plus an aggregate of raw rows (minutes) or
of exact minutes (hours) for each pending bucket. Readers always see exact rollups, and the worker only decides how
much of them is precomputed. The migration's views were generated from `minutes_from_raw` / `hours_from_minutes`.
"""

from __future__ import annotations

from backend.telemetry.fields import FIELDS
from backend.telemetry.gpu_minutes import mark_dirty

PENDING_1M = "gpu_metrics_1m_pending"
PENDING_1H = "gpu_metrics_1h_pending"
KEYS = ("bucket", "gpu_uuid", "host", "gpu_index", "samples")
LOCK_MINUTE, LOCK_HOUR = 0x524F4C4D, 0x524F4C48  # advisory lock classes: a bucket's slot is the second key
LOCK_SLOTS = {LOCK_MINUTE: 256, LOCK_HOUR: 64}  # minutes 4 h 16 min apart share a slot, hours 2 days 16 h apart


def _aggregates() -> list[tuple[str, str, str]]:
    """(state column, aggregate over raw rows `m`, aggregate over 1-minute state rows `l`), in table order."""
    out: list[tuple[str, str, str]] = []
    for f in FIELDS:
        c = f.column
        if f.kind == "gauge":
            out += [(f"{c}_sum", f"sum(m.{c})", f"sum(l.{c}_sum)"),
                    (f"{c}_n", f"count(m.{c})", f"sum(l.{c}_n)::bigint")]
        out += [(f"{c}_min", f"min(m.{c})", f"min(l.{c}_min)"), (f"{c}_max", f"max(m.{c})", f"max(l.{c}_max)")]
    out.append(("clocks_event_reasons_or", "bit_or(m.clocks_event_reasons)", "bit_or(l.clocks_event_reasons_or)"))
    return out


def state_columns() -> list[str]:
    """Every column of `gpu_metrics_1m_state` and `gpu_metrics_1h_state`, in table order."""
    return [*KEYS, *(column for column, _, _ in _aggregates())]


def _per_bucket(buckets: str, source: str, width: str, keys: str, aggregates: list[str], time: str) -> str:
    """One aggregate per GPU per bucket of `buckets` (a FROM item aliased `b`, column `bucket`). A LATERAL
    subquery per bucket makes the plan an index range scan of `source` per bucket (with the reader's GPU filter
    pushed into it), never a scan of the whole table against every bucket."""
    return (f"SELECT b.bucket, a.* FROM {buckets} CROSS JOIN LATERAL (SELECT {keys}, {', '.join(aggregates)} "
            f"FROM {source} WHERE {time} >= b.bucket AND {time} < b.bucket + interval '{width}' "
            f"GROUP BY 1) a")


def minutes_from_raw(buckets: str) -> str:
    """1-minute state rows recomputed from raw rows for the minute starts in `buckets`."""
    return _per_bucket(buckets, "gpu_metrics m", "1 minute",
                       "m.gpu_uuid, max(m.host) AS host, max(m.gpu_index) AS gpu_index, count(*) AS samples",
                       [f"{raw} AS {column}" for column, raw, _ in _aggregates()], "m.time")


def hours_from_minutes(buckets: str) -> str:
    """1-hour state rows combined from the exact minutes (`gpu_metrics_1m_live`) for the hour starts in `buckets`:
    sums and counts add up, minima, maxima and bit-ors combine."""
    return _per_bucket(buckets, "gpu_metrics_1m_live l", "1 hour",
                       "l.gpu_uuid, max(l.host) AS host, max(l.gpu_index) AS gpu_index, "
                       "sum(l.samples)::bigint AS samples",
                       [f"{minutes} AS {column}" for column, _, minutes in _aggregates()], "l.bucket")


def lock_slot(lock_class: int, bucket: str) -> str:
    """SQL: the advisory lock slot of `bucket` (a timestamptz expression) in `lock_class`."""
    seconds = 60 if lock_class == LOCK_MINUTE else 3600
    return f"mod(extract(epoch FROM {bucket})::bigint / {seconds}, {LOCK_SLOTS[lock_class]})::int"


def lock_shared(minutes: str) -> str:
    """A statement taking the shared locks of the minutes in `minutes` (a FROM item with column `b`) and of their
    hours: run it before `invalidate`, as its own statement, so that `invalidate` sees a pass that just finished."""
    slots = (f"SELECT DISTINCT {LOCK_MINUTE} AS c, {lock_slot(LOCK_MINUTE, 'b')} AS k FROM {minutes} "
             f"UNION SELECT {LOCK_HOUR}, {lock_slot(LOCK_HOUR, 'b')} FROM {minutes}")
    return f"SELECT count(pg_advisory_xact_lock_shared(c, k)) FROM ({slots}) s"


def invalidate(minutes: str) -> list[str]:
    """CTEs that list the minutes of `minutes` (a relation with column `b`) and their hours as pending, delete
    their state rows and mark the hours' precomputed GPU-minutes stale (`gpu_minutes.py`). Sorted inserts: two sinks
    listing the same new buckets never deadlock."""
    hours = f"SELECT DISTINCT date_trunc('hour', b, 'UTC') FROM {minutes}"
    return [
        f"dirty_1h AS ({mark_dirty(minutes, 'b')})",
        f"pending_1m AS (INSERT INTO {PENDING_1M} (bucket) SELECT DISTINCT b FROM {minutes} ORDER BY 1 "
        "ON CONFLICT DO NOTHING)",
        f"pending_1h AS (INSERT INTO {PENDING_1H} (bucket) {hours} ORDER BY 1 ON CONFLICT DO NOTHING)",
        f"stale_1m AS (DELETE FROM gpu_metrics_1m_state WHERE bucket IN (SELECT b FROM {minutes}))",
        f"stale_1h AS (DELETE FROM gpu_metrics_1h_state WHERE bucket IN ({hours}))",
    ]
