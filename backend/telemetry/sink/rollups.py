"""SQL for the postgres profile's rollups: `gpu_metrics_1m` / `gpu_metrics_1h` kept by the sink.

The sink inserts raw rows with `ON CONFLICT DO NOTHING RETURNING …` and folds only the rows actually inserted into
`gpu_metrics_1m_state` / `_1h_state` (sums, non-null counts, minima, maxima, bit-or), in the same statement and
transaction. A replayed batch inserts nothing, so it adds nothing: rollups stay exact under redelivery. The views
`gpu_metrics_1m` / `gpu_metrics_1h` (migration 0102) turn sums and counts into the contract's `_avg` columns.
"""

from __future__ import annotations

from backend.telemetry.fields import FIELDS

ROLLUPS: tuple[tuple[str, str], ...] = (("gpu_metrics_1m_state", "minute"), ("gpu_metrics_1h_state", "hour"))


def _aggregates() -> tuple[list[str], list[str], list[str]]:
    """(state columns, aggregate expressions over the inserted rows, merge assignments on conflict)."""
    columns, exprs, merges = [], [], []
    for f in FIELDS:
        c = f.column
        if f.kind == "gauge":
            columns += [f"{c}_sum", f"{c}_n"]
            exprs += [f"sum({c})", f"count({c})"]
            merges += [f"{c}_sum = coalesce(s.{c}_sum + excluded.{c}_sum, s.{c}_sum, excluded.{c}_sum)",
                       f"{c}_n = s.{c}_n + excluded.{c}_n"]
        columns += [f"{c}_min", f"{c}_max"]
        exprs += [f"min({c})", f"max({c})"]
        merges += [f"{c}_min = least(s.{c}_min, excluded.{c}_min)", f"{c}_max = greatest(s.{c}_max, excluded.{c}_max)"]
    columns.append("clocks_event_reasons_or")
    exprs.append("bit_or(clocks_event_reasons)")
    merges.append("clocks_event_reasons_or = coalesce(s.clocks_event_reasons_or | excluded.clocks_event_reasons_or, "
                  "s.clocks_event_reasons_or, excluded.clocks_event_reasons_or)")
    return columns, exprs, merges


def _upsert(table: str, unit: str, source: str) -> str:
    columns, exprs, merges = _aggregates()
    return (
        f"INSERT INTO {table} AS s (bucket, gpu_uuid, host, gpu_index, samples, {', '.join(columns)}) "
        f"SELECT date_trunc('{unit}', time), gpu_uuid, max(host), max(gpu_index), count(*), {', '.join(exprs)} "
        f"FROM {source} GROUP BY 2, 1 ORDER BY 2, 1 "
        "ON CONFLICT (gpu_uuid, bucket) DO UPDATE SET host = excluded.host, gpu_index = excluded.gpu_index, "
        f"samples = s.samples + excluded.samples, {', '.join(merges)}"
    )


def insert_with_rollups(insert_raw: str) -> str:
    """Wrap `INSERT … RETURNING *` of raw rows so that the rollups take exactly the inserted rows.
    The statement returns one row, `inserted`."""
    ctes = [f"inserted AS ({insert_raw} RETURNING *)"]
    ctes += [f"r{i} AS ({_upsert(table, unit, 'inserted')})" for i, (table, unit) in enumerate(ROLLUPS)]
    return f"WITH {', '.join(ctes)} SELECT count(*) AS inserted FROM inserted"
