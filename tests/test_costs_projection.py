"""Cost arithmetic and parameter checks that need no database: the month-end projection, group names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backend.costs.projection import project
from backend.costs.spend import CostRow


def _day(key: str, usd: float) -> CostRow:
    return CostRow(key, 1, 24.0, 0.0, 0.0, usd, 0.0, usd, usd / 24)


def test_project_adds_the_trailing_run_rate_for_the_days_left() -> None:
    as_of = datetime(2026, 11, 11, tzinfo=UTC)
    result = project([_day("2026-11-09", 30.0), _day("2026-11-10", 48.0)], 96.0, timedelta(days=2), as_of)
    assert result.month_start == datetime(2026, 11, 1, tzinfo=UTC)
    assert result.month_end == datetime(2026, 12, 1, tzinfo=UTC)
    assert result.month_to_date_usd == pytest.approx(78.0)
    assert result.run_rate_usd_per_day == pytest.approx(48.0) and result.trailing_days == 2.0
    assert result.remaining_days == 20.0
    assert result.projected_month_usd == pytest.approx(78.0 + 20 * 48.0)


def test_project_mid_day_counts_the_fraction_left_and_crosses_the_year() -> None:
    as_of = datetime(2026, 12, 31, 12, tzinfo=UTC)
    result = project([], 12.0, timedelta(hours=6), as_of)
    assert result.month_end == datetime(2027, 1, 1, tzinfo=UTC)
    assert result.run_rate_usd_per_day == pytest.approx(48.0) and result.remaining_days == pytest.approx(0.5)
    assert result.projected_month_usd == pytest.approx(24.0)


def test_a_label_group_with_a_trailing_newline_is_refused() -> None:
    from backend.costs.spend import _key_sql
    from backend.queries.catalog import BadParameter

    assert _key_sql("label:team")[1] == {"label": "team"}
    with pytest.raises(BadParameter, match="label:team"):
        _key_sql("label:team\n")
