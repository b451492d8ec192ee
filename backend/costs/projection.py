"""Daily spend and the month-end projection: month-to-date actual spend plus the trailing run rate for the
rest of the month (the same arithmetic a finance team does by hand, so it is easy to check)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from backend.costs.spend import CostRow, cost_summary
from backend.queries.catalog import BadParameter
from backend.queries.timeseries import check_time

DAY = timedelta(days=1)


@dataclass(frozen=True)
class MonthProjection:
    month_start: datetime
    month_end: datetime
    as_of: datetime
    month_to_date_usd: float
    run_rate_usd_per_day: float
    trailing_days: float
    remaining_days: float
    projected_month_usd: float
    daily: list[CostRow]
    """Spend per UTC day so far this month (key = YYYY-MM-DD)."""


def daily_spend(conn: psycopg.Connection, start: datetime, end: datetime, *, idle_threshold_pct: float = 5.0
                ) -> list[CostRow]:
    """One row per UTC day with spend in [start, end), oldest first."""
    summary = cost_summary(conn, start, end, group_by="day", idle_threshold_pct=idle_threshold_pct)
    return sorted(summary.rows, key=lambda r: r.key)


def _month_bounds(at: datetime) -> tuple[datetime, datetime]:
    start = at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def project(daily: list[CostRow], trailing_total_usd: float, trailing: timedelta, as_of: datetime
            ) -> MonthProjection:
    """Pure arithmetic: month-to-date (the sum of `daily`) + the trailing window's spend per day × days left."""
    month_start, month_end = _month_bounds(as_of)
    month_to_date = sum(r.cost_usd for r in daily)
    trailing_days = trailing / DAY
    run_rate = trailing_total_usd / trailing_days
    remaining = (month_end - as_of) / DAY
    return MonthProjection(month_start, month_end, as_of, month_to_date, run_rate, trailing_days, remaining,
                           month_to_date + run_rate * remaining, daily)


def month_projection(
    conn: psycopg.Connection, as_of: datetime | None = None, *, trailing: timedelta = DAY,
    idle_threshold_pct: float = 5.0,
) -> MonthProjection:
    """Projected spend of the month containing `as_of`: loads the month's daily spend and the `trailing` window's
    total before `as_of`, then `project`s them."""
    as_of = check_time(as_of, "as_of") if as_of else datetime.now(UTC)
    if not timedelta(hours=1) <= trailing <= timedelta(days=31):
        raise BadParameter("trailing", "must be between 1 hour and 31 days")
    month_start, _ = _month_bounds(as_of)
    daily = daily_spend(conn, month_start, as_of, idle_threshold_pct=idle_threshold_pct) if as_of > month_start else []
    window = cost_summary(conn, as_of - trailing, as_of, group_by="total", idle_threshold_pct=idle_threshold_pct)
    return project(daily, window.total.cost_usd, trailing, as_of)
