"""Spend read through the precomputed GPU-minutes (`gpu_minutes_1h`) equals the reference query over the 1-minute
rollups exactly, on randomized fleets: every grouping, ranges that start and end mid-hour, a price change inside a
precomputed hour, late samples into one, idle threshold changes, the month projection and $/1M tokens."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
from analytics_data import Gpu, store
from spend_reference import reference_spend

from backend.costs.catalog import set_price
from backend.costs.projection import month_projection
from backend.costs.spend import cost_summary
from backend.costs.tokens import token_costs
from backend.identity.principal import SYSTEM
from backend.telemetry.gpu_minutes import refresh
from backend.telemetry.sink.rollup_worker import materialize

H100, L4, T4 = "NVIDIA H100 80GB HBM3", "NVIDIA L4", "NVIDIA T4"
T0 = datetime(2026, 10, 31, 12, tzinfo=UTC)  # 30 hours of data: two UTC days and two months
HOURS = 30
GROUPS = ("total", "host", "model", "gpu", "day", "label:team", "label:pricing_kind")
A = Gpu("GPU-a", "n1", 0, H100, {"team": "search"})
B = Gpu("GPU-b", "n1", 1, H100, {"team": "search", "pricing_kind": "spot"})
C = Gpu("GPU-c", "n2", 0, L4, {"team": "ads"})
D = Gpu("GPU-d", "n2", 1, T4)  # unpriced
E = Gpu("GPU-e", "n3", 0, L4, {"team": "ads"})
E_MOVED = Gpu("GPU-e", "n4", 0, L4, {"team": "ads"})  # E moves to n4 half-way through an hour
F = Gpu("GPU-f", "n3", 1, H100)
MOVE = T0 + timedelta(hours=12, minutes=30)
UTILS = (0.0, 3.0, 4.0, 5.0, 6.0, 50.0, 99.0, 4.5, 5.5, 59.0, 61.0, None)


def fleet_samples(rng: random.Random, start: datetime, hours: int) -> list[tuple]:
    """Each GPU present in ~85 % of the minutes, 1–4 samples at :00/:15/:30/:45, gpu_util from UTILS (None: a
    sample without it)."""
    rows = []
    for minute in range(hours * 60):
        at = start + timedelta(minutes=minute)
        for gpu in (A, B, C, D, E, F):
            if rng.random() > 0.85:
                continue
            if gpu is E and at >= MOVE:
                gpu = E_MOVED
            for second in sorted(rng.sample((0, 15, 30, 45), rng.randint(1, 4))):
                rows.append((gpu, at + timedelta(seconds=second), {"gpu_util": rng.choice(UTILS)}))
    return rows


def precompute(db: psycopg.Connection, idle: float = 5.0) -> int:
    """Every complete hour of the data counted at `idle` (the worker's refresh, without its per-pass limit)."""
    return refresh(db, idle_threshold_pct=idle, since=T0 - timedelta(hours=1), settle=timedelta(0),
                   max_hours=100_000).hours


def trusted_hours(db: psycopg.Connection, idle: float = 5.0) -> set[datetime]:
    return {r["hour"] for r in db.execute(
        "SELECT hour FROM gpu_minutes_1h_trusted WHERE idle_threshold = %s AND hour >= %s AND hour < %s",
        (idle, T0, T0 + timedelta(hours=HOURS)))}


def assert_same_spend(db: psycopg.Connection, start: datetime, end: datetime, idle: float = 5.0) -> None:
    for group_by in GROUPS:
        ours = cost_summary(db, start, end, group_by=group_by, idle_threshold_pct=idle)
        with reference_spend():
            reference = cost_summary(db, start, end, group_by=group_by, idle_threshold_pct=idle)
        assert ours == reference, (group_by, start, end, idle)


def ranges(rng: random.Random, n: int) -> list[tuple[datetime, datetime]]:
    """The whole data, hour-aligned and mid-hour edges, one inside an hour, and `n` random ones."""
    whole = (T0 - timedelta(hours=1), T0 + timedelta(hours=HOURS + 1))
    fixed = [whole, (T0 + timedelta(hours=2), T0 + timedelta(hours=20)),
             (T0 + timedelta(minutes=17, seconds=30), T0 + timedelta(hours=29, minutes=43)),
             (T0 + timedelta(hours=4, minutes=5), T0 + timedelta(hours=4, minutes=55))]
    spans = []
    for _ in range(n):
        lo = T0 + timedelta(seconds=rng.randrange(0, HOURS * 3600))
        spans.append((lo, lo + timedelta(seconds=rng.randrange(60, 20 * 3600))))
    return fixed + spans


def prices(db: psycopg.Connection) -> None:
    """H100 changes price at a non-minute instant inside an hour, L4 on an hour boundary; B is on spot."""
    before = T0 - timedelta(days=1)
    set_price(db, SYSTEM, H100, "on_demand", Decimal("10"), effective_from=before, source="test")
    set_price(db, SYSTEM, H100, "on_demand", Decimal("12.5"), effective_from=T0 + timedelta(hours=5, minutes=17,
                                                                                              seconds=30))
    set_price(db, SYSTEM, H100, "spot", Decimal("3.333333"), effective_from=before, source="test")
    set_price(db, SYSTEM, L4, "on_demand", Decimal("1"), effective_from=before, source="test")
    set_price(db, SYSTEM, L4, "on_demand", Decimal("1.25"), effective_from=T0 + timedelta(hours=9))


def test_precomputed_spend_equals_the_reference_for_every_grouping_and_range(settings, db):
    rng = random.Random(14)
    prices(db)
    store(settings, fleet_samples(rng, T0, HOURS))
    materialize(settings, due_after=timedelta(0))  # the rollups, as the worker would
    assert precompute(db) >= HOURS
    assert len(trusted_hours(db)) == HOURS

    for start, end in ranges(rng, 6):
        assert_same_spend(db, start, end)
    assert_same_spend(db, T0, T0 + timedelta(hours=HOURS), idle=60.0)  # not precomputed at 60 %: from minutes
    for as_of in (T0 + timedelta(hours=11, minutes=59), T0 + timedelta(hours=29, minutes=10, seconds=5)):
        ours = month_projection(db, as_of, idle_threshold_pct=5.0)
        with reference_spend():
            assert ours == month_projection(db, as_of, idle_threshold_pct=5.0)
        today = as_of.replace(hour=0, minute=0, second=0, microsecond=0)
        assert_same_spend(db, today, as_of)

    # the answer really comes from the table: a wrong count there shows
    hour = T0 + timedelta(hours=7)
    db.execute("UPDATE gpu_minutes_1h SET minutes = minutes - 1 WHERE hour = %s AND gpu_uuid = 'GPU-a' "
               "AND minutes > idle_minutes", (hour,))
    tampered = cost_summary(db, T0, T0 + timedelta(hours=HOURS), group_by="gpu")
    with reference_spend():
        assert tampered != cost_summary(db, T0, T0 + timedelta(hours=HOURS), group_by="gpu")


def test_late_samples_price_changes_and_a_new_threshold_stay_exact(settings, db):
    rng = random.Random(2026)
    prices(db)
    store(settings, fleet_samples(rng, T0, HOURS))
    materialize(settings, due_after=timedelta(0))
    precompute(db)
    whole = (T0, T0 + timedelta(hours=HOURS))

    # late samples into a precomputed hour: a new minute for A, and C's minutes turned idle
    late = T0 + timedelta(hours=3)
    store(settings, [(A, late + timedelta(minutes=m, seconds=59), {"gpu_util": 80.0}) for m in range(60)]
          + [(C, late + timedelta(minutes=m, seconds=59), {"gpu_util": 0.0}) for m in range(0, 60, 2)])
    assert late not in trusted_hours(db)
    assert_same_spend(db, *whole)  # untrusted: its minutes come from the rollups (pending ones included)
    assert materialize(settings, due_after=timedelta(0)).gpu_hours >= 1  # the worker's pass recounts it
    assert late in trusted_hours(db)
    assert_same_spend(db, *whole)

    # a price change inside a precomputed hour: that hour is read minute by minute
    set_price(db, SYSTEM, L4, "on_demand", Decimal("2"), effective_from=T0 + timedelta(hours=20, minutes=31))
    assert_same_spend(db, *whole)
    assert_same_spend(db, T0 + timedelta(hours=20, minutes=10), T0 + timedelta(hours=21, minutes=10))

    # the idle threshold changes: counts at the old one are never used for the new one
    assert precompute(db, idle=61.0) >= HOURS
    assert trusted_hours(db) == set() and len(trusted_hours(db, 61.0)) == HOURS
    assert_same_spend(db, *whole, idle=61.0)
    assert_same_spend(db, *whole, idle=5.0)


def test_token_costs_read_the_precomputed_minutes_at_any_threshold(settings, db):
    rng = random.Random(7)
    prices(db)
    tokens = [(T0 + timedelta(minutes=m), gpu, model, 60.0, 10, 1_000 + m, 2_000, 40.0, 90.0)
              for m in range(0, HOURS * 60, 7) for gpu, model in ((A, "llama-70b"), (C, "small"), (D, "small"))]
    store(settings, fleet_samples(rng, T0, HOURS), tokens)
    materialize(settings, due_after=timedelta(0))
    precompute(db, idle=42.0)
    for start, end in ranges(rng, 3):
        ours = token_costs(db, start, end)
        with reference_spend():
            assert ours == token_costs(db, start, end)


def test_the_rollup_worker_pass_keeps_the_table_current(settings, db):
    """`materialize` (the worker's pass) counts recent complete hours at COST_IDLE_UTIL_THRESHOLD; a late write
    leaves its hour untrusted until the next pass, and spend is exact all along."""
    rng = random.Random(3)
    prices(db)
    now = datetime.now(UTC)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    store(settings, fleet_samples(rng, start, 3))
    report = materialize(settings, due_after=timedelta(0))
    hours = {start + timedelta(hours=h) for h in range(3)}
    assert report.gpu_hours >= 3
    trusted = {r["hour"] for r in db.execute("SELECT hour FROM gpu_minutes_1h_trusted WHERE idle_threshold = %s",
                                             (settings.cost_idle_util_threshold,))}
    assert hours <= trusted
    assert_same_spend(db, start - timedelta(minutes=30), now)

    store(settings, [(F, start + timedelta(hours=1, minutes=5, seconds=59), {"gpu_util": 0.0})])
    assert start + timedelta(hours=1) not in {r["hour"] for r in db.execute("SELECT hour FROM gpu_minutes_1h_trusted")}
    assert_same_spend(db, start - timedelta(minutes=30), now)
    assert materialize(settings, due_after=timedelta(0)).gpu_hours >= 1
    assert start + timedelta(hours=1) in {r["hour"] for r in db.execute("SELECT hour FROM gpu_minutes_1h_trusted")}
    assert_same_spend(db, start - timedelta(minutes=30), now)
