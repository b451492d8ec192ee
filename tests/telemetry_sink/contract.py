"""The telemetry storage contract as the readers see it, checked against either profile."""

from __future__ import annotations

from backend.telemetry.fields import FIELDS

RAW = {"time": "timestamp with time zone", "gpu_uuid": "text", "host": "text", "gpu_index": "smallint",
       **{f.column: f.sql_type for f in FIELDS}, "extra": "jsonb"}


def rollup_columns() -> dict[str, str]:
    columns = {"bucket": "timestamp with time zone", "gpu_uuid": "text", "host": "text", "gpu_index": "smallint",
               "samples": "bigint"}
    for f in FIELDS:
        if f.kind == "gauge":
            columns.update({f"{f.column}_{a}": "double precision" for a in ("avg", "min", "max")})
        else:
            columns.update({f"{f.column}_{a}": "bigint" for a in ("min", "max")})
    columns["clocks_event_reasons_or"] = "bigint"
    return columns


def columns_of(conn, relation: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
        (relation,)).fetchall()
    return {(r["column_name"] if isinstance(r, dict) else r[0]): (r["data_type"] if isinstance(r, dict) else r[1])
            for r in rows}
