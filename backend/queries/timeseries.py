"""Time series of chosen metrics for one GPU, at the resolution the range calls for.

`auto` reads raw samples for ranges up to 2 hours, the 1-minute rollup up to 3 days, and the 1-hour rollup
beyond, so a chart never pulls more than a few thousand points. Pages are keyed by time (`cursor`), which stays
correct while new samples arrive. Every read over a range (series, offenders, costs) is capped per resolution
(`QUERY_MAX_RANGE_*_DAYS`), so no caller can aggregate the whole retention in one request.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from backend.config import get_settings
from backend.errors import NotFound
from backend.queries.catalog import BadParameter, parse_metrics, value_column
from backend.telemetry.fields import Field

Resolution = Literal["raw", "1m", "1h"]
RAW_MAX_SPAN = timedelta(hours=2)
MINUTE_MAX_SPAN = timedelta(days=3)
MAX_LIMIT = 10_000
_ROLLUPS: dict[str, tuple[str, timedelta]] = {
    "1m": ("gpu_metrics_1m", timedelta(minutes=1)),
    "1h": ("gpu_metrics_1h", timedelta(hours=1)),
}


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One instant (raw) or bucket start (rollups). `min`/`max` are the bucket's extremes; None for raw."""

    time: datetime
    values: dict[str, float | None]
    min: dict[str, float | None] | None = None
    max: dict[str, float | None] | None = None


@dataclass(frozen=True)
class TimeSeries:
    gpu_uuid: str
    start: datetime
    end: datetime
    resolution: Resolution
    metrics: list[str]
    points: list[SeriesPoint]
    next_cursor: str | None


def as_utc(value: datetime) -> datetime:
    """Aware datetimes as they are; naive ones are taken to be UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def check_time(value: datetime, parameter: str) -> datetime:
    """An aware time within the years 2000-2199 (so window arithmetic can never overflow)."""
    value = as_utc(value)
    if not EARLIEST <= value < LATEST:
        raise BadParameter(parameter, "must be between the years 2000 and 2199")
    return value


def max_span(resolution: Resolution) -> timedelta:
    """The widest range one request may read at `resolution` (QUERY_MAX_RANGE_RAW/1M/1H_DAYS)."""
    settings = get_settings()
    days = {"raw": settings.query_max_range_raw_days, "1m": settings.query_max_range_1m_days,
            "1h": settings.query_max_range_1h_days}[resolution]
    return timedelta(days=days)


def _span_text(span: timedelta) -> str:
    days = round(span / timedelta(days=1), 2)
    if days >= 1:
        return f"{days:g} day{'' if days == 1 else 's'}"
    hours = round(span / timedelta(hours=1), 2)
    return f"{hours:g} hour{'' if hours == 1 else 's'}"


def check_range(start: datetime, end: datetime, resolution: Resolution = "1m") -> tuple[datetime, datetime]:
    """Valid bounds, end after start, and no wider than the cap of the data read: `resolution` names it (the
    offender and cost queries read the 1-minute rollup, the default)."""
    start, end = check_time(start, "start"), check_time(end, "end")
    if end <= start:
        raise BadParameter("end", "must be after start")
    cap = max_span(resolution)
    if end - start > cap:
        setting = f"QUERY_MAX_RANGE_{resolution.upper()}_DAYS"
        raise BadParameter("start", f"the range is {_span_text(end - start)}; at most {_span_text(cap)} at "
                                    f"{resolution} resolution ({setting}): ask for a shorter range")
    return start, end


def choose_resolution(start: datetime, end: datetime) -> Resolution:
    span = end - start
    if span <= RAW_MAX_SPAN:
        return "raw"
    return "1m" if span <= MINUTE_MAX_SPAN else "1h"


def encode_cursor(resolution: Resolution, after: datetime) -> str:
    return base64.urlsafe_b64encode(f"{resolution}|{after.isoformat()}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, resolution: Resolution) -> datetime:
    """The time after which the next page starts; a cursor from another resolution or garbage is a 4xx."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, stamp = text.partition("|")
        after = datetime.fromisoformat(stamp)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadParameter("cursor", "not a cursor returned by this endpoint") from None
    if kind != resolution or after.tzinfo is None:
        raise BadParameter("cursor", "not a cursor returned by this endpoint for this resolution")
    return after


def gpu_timeseries(
    conn: psycopg.Connection,
    gpu_uuid: str,
    start: datetime,
    end: datetime,
    metrics: str | list[str],
    *,
    resolution: Literal["auto", "raw", "1m", "1h"] = "auto",
    limit: int = 2000,
    cursor: str | None = None,
    bands: bool = True,
) -> TimeSeries:
    """Points in [start, end) for the named metrics (column names from `GET /api/v1/metrics`). `bands=False`
    leaves out the rollups' per-bucket minima and maxima (a third of the columns) for callers that draw lines."""
    if resolution not in ("auto", "raw", "1m", "1h"):
        raise BadParameter("resolution", "choose auto, raw, 1m or 1h")
    chosen: Resolution = choose_resolution(as_utc(start), as_utc(end)) if resolution == "auto" else resolution
    start, end = check_range(start, end, chosen)
    fields = parse_metrics(metrics)
    if not fields:
        raise BadParameter("metrics", "name at least one metric")
    if not 1 <= limit <= MAX_LIMIT:
        raise BadParameter("limit", f"must be between 1 and {MAX_LIMIT}")
    after = decode_cursor(cursor, chosen) if cursor else None
    if conn.execute("SELECT 1 FROM gpus WHERE gpu_uuid = %s", (gpu_uuid,)).fetchone() is None:
        raise NotFound(f"no GPU with uuid {gpu_uuid!r}")
    params = {"gpu": gpu_uuid, "start": start, "end": end, "after": after, "limit": limit + 1}
    points = _raw(conn, fields, params) if chosen == "raw" else _rollup(conn, fields, chosen, params, bands=bands)
    next_cursor = encode_cursor(chosen, points[limit - 1].time) if len(points) > limit else None
    return TimeSeries(gpu_uuid, start, end, chosen, [f.column for f in fields], points[:limit], next_cursor)


def points_from_rows(rows: Iterable[tuple], names: list[str], *, bands: bool) -> list[SeriesPoint]:
    """Points from `(time, values…[, minima…, maxima…])` tuples, one value per name in each block (the SQL
    selects exactly these columns, so the blocks always line up)."""
    n = len(names)
    if not bands:
        return [SeriesPoint(r[0], dict(zip(names, r[1:], strict=False))) for r in rows]
    return [
        SeriesPoint(r[0], dict(zip(names, r[1:n + 1], strict=False)),
                    dict(zip(names, r[n + 1:2 * n + 1], strict=False)), dict(zip(names, r[2 * n + 1:], strict=False)))
        for r in rows
    ]


def _fetch(conn: psycopg.Connection, query: sql.Composable, params: dict) -> list[tuple]:
    """Binary transfer: tens of thousands of float8 values load several times faster than as text."""
    with conn.cursor(binary=True, row_factory=tuple_row) as cur:
        return cur.execute(query, params).fetchall()


def _identifiers(names: Iterable[str]) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, names))


def _raw(conn: psycopg.Connection, fields: list[Field], params: dict) -> list[SeriesPoint]:
    names = [f.column for f in fields]
    query = sql.SQL(
        """SELECT time, {cols} FROM gpu_metrics
           WHERE gpu_uuid = %(gpu)s AND time >= %(start)s AND time < %(end)s
             AND (%(after)s::timestamptz IS NULL OR time > %(after)s)
           ORDER BY time LIMIT %(limit)s"""
    ).format(cols=_identifiers(names))
    return points_from_rows(_fetch(conn, query, params), names, bands=False)


def _rollup(conn: psycopg.Connection, fields: list[Field], resolution: str, params: dict, *, bands: bool
            ) -> list[SeriesPoint]:
    relation, width = _ROLLUPS[resolution]
    columns = [*map(value_column, fields)]
    if bands:
        columns += [*(f"{f.column}_min" for f in fields), *(f"{f.column}_max" for f in fields)]
    query = sql.SQL(
        """SELECT bucket, {cols} FROM {relation}
           WHERE gpu_uuid = %(gpu)s AND bucket > %(first)s AND bucket < %(end)s
             AND (%(after)s::timestamptz IS NULL OR bucket > %(after)s)
           ORDER BY bucket LIMIT %(limit)s"""
    ).format(cols=_identifiers(columns), relation=sql.Identifier(relation))
    rows = _fetch(conn, query, {**params, "first": params["start"] - width})
    return points_from_rows(rows, [f.column for f in fields], bands=bands)
