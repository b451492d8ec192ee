"""DDL for telemetry storage generated from the DCGM field catalog, shared by both profiles' migrations.

Migrations 0101 and 0102 (`backend/db/migrations/*.py`) call these, so a field added to `fields.FIELDS` reaches the
raw table, the sink-kept rollup state and views (postgres) and the continuous aggregates (timescaledb) alike.
The text is part of each migration's checksum: change it only together with a new migration.
"""

from __future__ import annotations

from backend.telemetry.fields import FIELDS

_KEY = (("time", "timestamptz NOT NULL"), ("gpu_uuid", "text NOT NULL"), ("host", "text NOT NULL"),
        ("gpu_index", "smallint NOT NULL"))


def gpu_metrics_table() -> str:
    """`CREATE TABLE gpu_metrics (…)`: the key, one column per field, `extra`; the caller ends the statement."""
    columns = [*_KEY, *((f.column, f.sql_type) for f in FIELDS), ("extra", "jsonb")]
    lines = [f"    {name:<35}{sql_type}," for name, sql_type in columns]
    return "CREATE TABLE gpu_metrics (\n" + "\n".join(lines) + "\n    PRIMARY KEY (gpu_uuid, time)\n)"


def _rollup_outputs(average: str, extreme: str) -> str:
    """The select list after the rollup key: gauges `{c}_avg`, every field `{c}_min`/`_max`, the bit-or.
    `average` and `extreme` are templates over `c` (the column) and, for `extreme`, `agg` (min or max)."""
    lines = []
    for f in FIELDS:
        if f.kind == "gauge":
            lines.append(average.format(c=f.column))
        lines += [extreme.format(c=f.column, agg="min"), extreme.format(c=f.column, agg="max")]
    return ",\n".join(f"       {line}" for line in lines)


def sink_rollup(rollup: str) -> str:
    """postgres profile: `{rollup}_state` (sums, non-null counts, minima, maxima, bit-or) kept by the sink
    (`backend/telemetry/sink/rollups.py`), its bucket index and the view `{rollup}` with the contract's columns."""
    state = f"{rollup}_state"
    columns = []
    for f in FIELDS:
        if f.kind == "gauge":
            columns += [f"{f.column}_sum double precision", f"{f.column}_n bigint NOT NULL DEFAULT 0"]
        columns += [f"{f.column}_min {f.sql_type}", f"{f.column}_max {f.sql_type}"]
    body = "".join(f"    {column},\n" for column in columns)
    return (
        f"CREATE TABLE {state} (\n"
        "    bucket    timestamptz NOT NULL,\n    gpu_uuid  text NOT NULL,\n    host      text NOT NULL,\n"
        "    gpu_index smallint NOT NULL,\n    samples   bigint NOT NULL,\n"
        f"{body}    clocks_event_reasons_or bigint,\n    PRIMARY KEY (gpu_uuid, bucket)\n);\n"
        f"CREATE INDEX {state}_bucket ON {state} (bucket DESC);\n\n"
        f"CREATE VIEW {rollup} AS\nSELECT bucket, gpu_uuid, host, gpu_index, samples,\n"
        + _rollup_outputs("{c}_sum / NULLIF({c}_n, 0) AS {c}_avg", "{c}_{agg}")
        + f",\n       clocks_event_reasons_or\nFROM {state};\n"
    )


def continuous_aggregate(rollup: str, width: str) -> str:
    """timescaledb profile: the continuous aggregate `{rollup}` over `gpu_metrics` in buckets of `width`
    (an interval literal, `1 minute`), real-time aggregation on, created empty for its refresh policy to fill."""
    bucket = f"time_bucket(INTERVAL '{width}', time)"
    return (
        f"CREATE MATERIALIZED VIEW {rollup}\n"
        "WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS\n"
        f"SELECT {bucket} AS bucket,\n       gpu_uuid,\n       max(host) AS host,\n"
        "       max(gpu_index) AS gpu_index,\n       count(*) AS samples,\n"
        + _rollup_outputs("avg({c}) AS {c}_avg", "{agg}({c}) AS {c}_{agg}")
        + ",\n       bit_or(clocks_event_reasons) AS clocks_event_reasons_or\n"
        f"FROM gpu_metrics\nGROUP BY {bucket}, gpu_uuid\nWITH NO DATA;\n"
    )
