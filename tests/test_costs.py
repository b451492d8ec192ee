"""Cost arithmetic on real PostgreSQL, checked against hand-computed examples."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from analytics_data import Gpu, samples, store
from typer.testing import CliRunner

from backend.audit import entries
from backend.cli import app as cli
from backend.costs.catalog import list_prices, set_price
from backend.costs.projection import month_projection
from backend.costs.savings import savings_ledger
from backend.costs.spend import cost_summary
from backend.costs.tokens import token_costs
from backend.errors import InvalidInput
from backend.identity.principal import SYSTEM, PermissionDenied, Principal, Role
from backend.queries.catalog import BadParameter

T0 = datetime(2026, 11, 2, tzinfo=UTC)
H100, L4, T4 = "NVIDIA H100 80GB HBM3", "NVIDIA L4", "NVIDIA T4"
A = Gpu("GPU-a", "n1", 0, H100, {"team": "search"})
B = Gpu("GPU-b", "n2", 0, L4, {"team": "ads"})
D = Gpu("GPU-d", "n2", 1, T4)
E = Gpu("GPU-e", "n3", 0, L4)  # serves tokens but sends no telemetry


@pytest.fixture
def priced(db):
    """H100 at $10/GPU-h and L4 at $1/GPU-h from a day before T0; T4 has no price."""
    set_price(db, SYSTEM, H100, "on_demand", Decimal("10"), effective_from=T0 - timedelta(days=1), source="test")
    set_price(db, SYSTEM, L4, "on_demand", Decimal("1"), effective_from=T0 - timedelta(days=1), source="test")
    return db


@pytest.fixture
def usage(settings, priced):
    """A: 120 min (50 % busy, then 2 %). B: 60 min idle. D: 30 min busy, unpriced."""
    rows = samples(A, T0, 120, gpu_util=lambda s: 50.0 if s < 3600 else 2.0)
    rows += samples(B, T0, 60, gpu_util=0.0)
    rows += samples(D, T0, 30, gpu_util=50.0)
    per_minute = [(T0 + timedelta(minutes=m + 1), A, "llama-70b", 60.0, 100, 20_000, 40_000, 120.0, 480.0)
                  for m in range(120)]
    per_minute += [(T0 + timedelta(minutes=m + 1), B, "small-a", 60.0, 10, 3_000, 3_000, 50.0, 90.0)
                   for m in range(60)]
    per_minute += [(T0 + timedelta(minutes=m + 1), B, "small-b", 60.0, 10, 1_000, 1_000, 30.0, 60.0)
                   for m in range(60)]
    per_minute += [(T0 + timedelta(minutes=1), D, "small-b", 60.0, 1, 500, 500, None, None),
                   (T0 + timedelta(minutes=1), E, "small-b", 60.0, 1, 700, 300, None, None)]
    store(settings, rows, per_minute)
    return T0, T0 + timedelta(hours=3)


def test_gpu_hours_spend_and_idle_by_host(usage, db):
    summary = cost_summary(db, *usage, group_by="host", idle_threshold_pct=5.0)
    n1, n2 = summary.rows
    assert (n1.key, n1.gpus, n1.gpu_hours, n1.cost_usd) == ("n1", 1, 2.0, pytest.approx(20.0))
    assert (n1.idle_gpu_hours, n1.idle_cost_usd, n1.used_cost_usd) == (1.0, pytest.approx(10.0), pytest.approx(10.0))
    assert (n2.key, n2.gpus, n2.gpu_hours, n2.unpriced_gpu_hours) == ("n2", 2, 1.5, 0.5)
    assert (n2.cost_usd, n2.idle_cost_usd, n2.usd_per_gpu_hour) == (pytest.approx(1.0), pytest.approx(1.0), 1.0)
    total = summary.total
    assert (total.gpus, total.gpu_hours, total.cost_usd, total.idle_cost_usd) == (3, 3.5, 21.0, 11.0)
    assert total.usd_per_gpu_hour == pytest.approx(21 / 3)


def test_a_range_without_telemetry_costs_nothing(usage, db):
    empty = cost_summary(db, T0 - timedelta(days=3), T0 - timedelta(days=2), group_by="total")
    assert empty.rows == []
    assert (empty.total.gpus, empty.total.gpu_hours, empty.total.cost_usd) == (0, 0.0, 0.0)
    assert empty.total.usd_per_gpu_hour is None


def test_grouping_by_model_label_gpu_and_day(usage, db):
    def keyed(group_by):
        return {r.key: round(r.cost_usd, 6) for r in cost_summary(db, *usage, group_by=group_by).rows}

    assert keyed("model") == {H100: 20.0, L4: 1.0, T4: 0.0}
    assert keyed("label:team") == {"search": 20.0, "ads": 1.0, "(none)": 0.0}
    assert keyed("gpu") == {"GPU-a": 20.0, "GPU-b": 1.0, "GPU-d": 0.0}
    assert keyed("day") == {"2026-11-02": 21.0}
    with pytest.raises(BadParameter) as bad:
        cost_summary(db, *usage, group_by="colour")
    assert bad.value.field == "group_by"


def test_idle_threshold_is_configurable(usage, db):
    assert cost_summary(db, *usage, group_by="total", idle_threshold_pct=60).total.idle_cost_usd == pytest.approx(21.0)
    assert cost_summary(db, *usage, group_by="total", idle_threshold_pct=0).total.idle_cost_usd == 0.0


def test_each_minute_gets_the_price_in_effect(usage, db):
    set_price(db, SYSTEM, H100, "on_demand", Decimal("20"), effective_from=T0 + timedelta(hours=1))
    a = cost_summary(db, *usage, group_by="gpu").rows[0]
    assert (a.key, a.cost_usd) == ("GPU-a", pytest.approx(10.0 + 20.0))


def test_cost_per_million_tokens(usage, db):
    costs = {c.served_model: c for c in token_costs(db, *usage)}
    llama = costs["llama-70b"]
    # $10/h ÷ (1000 tokens/s × 3600) × 10⁶ = $2.7778 per 1M tokens
    assert llama.tokens_per_second_per_gpu == pytest.approx(1000.0)
    assert llama.usd_per_million_tokens == pytest.approx(10 / (1000 * 3600) * 1e6)
    assert (llama.cost_usd, llama.gpu_hours, llama.costed_tokens) == (pytest.approx(20.0), 2.0, 7_200_000)
    assert llama.usd_per_million_completion_tokens == pytest.approx(20 / 4.8)
    assert (llama.latency_ms_p50, llama.latency_ms_p95) == (pytest.approx(120.0), pytest.approx(480.0))
    # B's $1 is shared by tokens: small-a served 6000/min, small-b 2000/min → $0.75 / $0.25
    assert costs["small-a"].cost_usd == pytest.approx(0.75)
    small_b = costs["small-b"]
    assert small_b.cost_usd == pytest.approx(0.25) and small_b.costed_tokens == 120_000
    assert small_b.uncosted_tokens == 2_000  # D is unpriced, E sent no telemetry
    assert small_b.usd_per_million_tokens == pytest.approx(0.25 / 120_000 * 1e6)
    assert small_b.gpus == 3


def test_month_end_projection(settings, db):
    set_price(db, SYSTEM, L4, "on_demand", Decimal("2"), effective_from=datetime(2026, 11, 1, tzinfo=UTC))
    store(settings, samples(B, datetime(2026, 11, 10, tzinfo=UTC), 1440, every_s=60, gpu_util=50.0))
    result = month_projection(db, datetime(2026, 11, 11, tzinfo=UTC))
    # 24 GPU-hours at $2 = $48 so far; run rate $48/day; 20 days left → 48 + 20 × 48
    assert result.month_to_date_usd == pytest.approx(48.0)
    assert result.run_rate_usd_per_day == pytest.approx(48.0) and result.remaining_days == 20.0
    assert result.projected_month_usd == pytest.approx(1008.0)
    assert [(d.key, d.cost_usd) for d in result.daily] == [("2026-11-10", pytest.approx(48.0))]
    week = month_projection(db, datetime(2026, 11, 11, tzinfo=UTC), trailing=timedelta(days=2))
    assert week.run_rate_usd_per_day == pytest.approx(24.0) and week.projected_month_usd == pytest.approx(528.0)


def test_savings_ledger_prices_stopped_gpus_at_the_price_of_each_moment(usage, db):
    set_price(db, SYSTEM, H100, "on_demand", Decimal("20"), effective_from=T0 + timedelta(minutes=30))
    for host, stopped, started in (("n2", T0, T0 + timedelta(hours=3)),
                                   ("n1", T0 - timedelta(hours=1), T0 + timedelta(hours=1)),  # clipped to T0
                                   ("n9", T0, T0 + timedelta(hours=1))):  # unknown host: no GPUs, saves nothing
        db.execute("INSERT INTO vm_events (host, at, kind) VALUES (%s, %s, 'stopped'), (%s, %s, 'booted')",
                   (host, stopped, host, started))
    result = savings_ledger(db, T0, T0 + timedelta(hours=3, minutes=30), now=T0 + timedelta(days=1))
    rows = {r.host: r for r in result.rows}
    # n2: 3 h × 2 GPUs; only B (L4, $1) is priced
    assert (rows["n2"].saved_gpu_hours, rows["n2"].unpriced_gpu_hours) == (6.0, pytest.approx(3.0))
    assert rows["n2"].saved_usd == pytest.approx(3.0)
    # n1: 0.5 h at $10 then 0.5 h at $20
    assert rows["n1"].saved_usd == pytest.approx(15.0) and rows["n9"].gpus == 0
    assert result.saved_usd == pytest.approx(18.0) and result.saved_gpu_hours == pytest.approx(7.0)


def test_catalog_is_seeded_editable_by_admins_and_audited(db):
    seeded = {p.gpu_model: p for p in list_prices(db)}
    assert set(seeded) == {H100, "NVIDIA A100-SXM4-80GB", L4}
    assert all(p.pricing_kind == "on_demand" and p.usd_per_gpu_hour > 0 and "GCP" in p.source
               for p in seeded.values())
    with pytest.raises(PermissionDenied):
        set_price(db, Principal("op", Role.operator), L4, "on_demand", Decimal("0.5"))
    new = set_price(db, Principal("root", Role.admin), L4, "spot", Decimal("0.25"), source="spot quote")
    assert new.usd_per_gpu_hour == Decimal("0.25") and new.effective_to is None
    assert {(p.gpu_model, p.pricing_kind) for p in list_prices(db)} >= {(L4, "spot"), (L4, "on_demand")}
    later = set_price(db, SYSTEM, L4, "on_demand", Decimal("0.80"))
    history = [p for p in list_prices(db, model="nvidia l4", history=True) if p.pricing_kind == "on_demand"]
    assert [p.usd_per_gpu_hour for p in history] == [seeded[L4].usd_per_gpu_hour, Decimal("0.80")]
    assert history[0].effective_to == later.effective_from
    with pytest.raises(InvalidInput, match="must start later"):
        set_price(db, SYSTEM, L4, "on_demand", Decimal("1"), effective_from=T0 - timedelta(days=3650))
    with pytest.raises(InvalidInput):
        set_price(db, SYSTEM, L4, "on_demand", Decimal("-1"))
    audit = entries(db, area="costs")
    assert [e.actor for e in audit] == ["system", "root"] and audit[0].detail["usd_per_gpu_hour"] == "0.80"


def test_costs_cli(usage, db):
    runner = CliRunner()
    listed = runner.invoke(cli, ["costs", "prices", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert {p["gpu_model"] for p in json.loads(listed.output)} >= {H100, L4}
    done = runner.invoke(cli, ["costs", "prices", "set", T4, "0.35", "--source", "quote"])
    assert done.exit_code == 0, done.output
    assert any(p.gpu_model == T4 for p in list_prices(db))
    bad = runner.invoke(cli, ["costs", "prices", "set", T4, "abc"])
    assert bad.exit_code == 2 and "not a number" in bad.output
    summary = runner.invoke(cli, ["costs", "summary", "--start", "2026-11-02T00:00:00Z", "--end",
                                  "2026-11-02T03:00:00Z", "--group-by", "model", "--json"])
    assert summary.exit_code == 0, summary.output
    assert json.loads(summary.output)["total"]["gpu_hours"] == 3.5
    tokens = runner.invoke(cli, ["costs", "tokens", "--start", "2026-11-02T00:00:00Z", "--end", "2026-11-02T03:00:00Z",
                                 "--json"])
    assert tokens.exit_code == 0, tokens.output
    assert json.loads(tokens.output)[0]["served_model"] == "llama-70b"
    projected = runner.invoke(cli, ["costs", "projection", "--as-of", "2026-11-02T03:00:00Z", "--json"])
    assert projected.exit_code == 0 and json.loads(projected.output)["month_to_date_usd"] == 21.0
