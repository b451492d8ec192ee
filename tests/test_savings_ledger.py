"""The auto-shutdown savings ledger on real PostgreSQL: rows from the agent's own records, hand-computed dollars."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from typer.testing import CliRunner

from backend.api.tokens import create_token
from backend.api_app import create_app
from backend.cli import app as cli
from backend.config import Settings
from backend.costs import service as costs
from backend.costs.catalog import set_price, set_vm_price
from backend.costs.savings import savings_ledger
from backend.errors import InvalidInput
from backend.identity.principal import SYSTEM, PermissionDenied, Principal, Role
from backend.vm import service as vm
from backend.vm.actions import GcpStop
from backend.vm.state import DbStore
from tests.fakes.gce import FakeGce
from tests.test_vm_agent import BOOT, FakeClock, FixedSignal, make_agent, run_until

L4, H100 = "NVIDIA L4", "NVIDIA H100 80GB HBM3"
T0 = datetime(2026, 11, 2, tzinfo=UTC)
VIEWER = Principal("vic", Role.viewer)


def _gpus(db: psycopg.Connection, host: str, model: str, count: int) -> None:
    for index in range(count):
        db.execute("INSERT INTO gpus (gpu_uuid, host, gpu_index, model, first_seen, last_seen) "
                   "VALUES (%s, %s, %s, %s, %s, %s)", (f"GPU-{host}-{index}", host, index, model, T0, T0))


def _event(db: psycopg.Connection, host: str, at: datetime, kind: str, action: str = "gcp") -> None:
    db.execute("INSERT INTO vm_events (host, at, kind, detail) VALUES (%s, %s, %s, %s)",
               (host, at, kind, json.dumps({"action": action})))


@pytest.fixture
def fleet(db: psycopg.Connection) -> psycopg.Connection:
    """n1: 2 × L4 at $1 + $0.50/h for the VM → $2.50/h; n2: 1 × H100 at $10/h; n3: 1 × L4."""
    set_price(db, SYSTEM, L4, "on_demand", Decimal("1"), effective_from=T0 - timedelta(days=1))
    set_price(db, SYSTEM, H100, "on_demand", Decimal("10"), effective_from=T0 - timedelta(days=1))
    set_vm_price(db, SYSTEM, "n1", Decimal("0.5"), source="test")
    _gpus(db, "n1", L4, 2)
    _gpus(db, "n2", H100, 1)
    _gpus(db, "n3", L4, 1)
    return db


def test_ledger_counts_real_stops_to_the_next_start_or_the_horizon(fleet: psycopg.Connection) -> None:
    db = fleet
    _event(db, "n1", T0 + timedelta(hours=1), "stopped")
    _event(db, "n1", T0 + timedelta(hours=4), "booted")  # 3 h × $2.50 = $7.50
    _event(db, "n1", T0 + timedelta(hours=22), "stopped")  # never started again: counted 24 h, to the 2nd's 22:00
    _event(db, "n3", T0 + timedelta(hours=2), "stop_failed")  # failed and aborted stops save nothing
    _event(db, "n3", T0 + timedelta(hours=2), "stop_aborted")
    end = T0 + timedelta(days=3)

    ledger = savings_ledger(db, T0, end, now=end)
    assert [(r.host, r.kind, r.gpus, r.usd_per_hour, r.hours) for r in ledger.rows] == [
        ("n1", "stopped", 2, 2.5, 3.0), ("n1", "stopped", 2, 2.5, 24.0)]
    assert ledger.rows[0].started_at == T0 + timedelta(hours=4) and ledger.rows[1].started_at is None
    assert ledger.saved_usd == pytest.approx(7.5 + 60.0) and ledger.saved_gpu_hours == pytest.approx(54.0)
    assert "24 h" in ledger.assumption and ledger.would_save_usd == 0.0
    # by UTC day: the 2nd gets 2 h of the open stop, the 3rd the other 22 h
    assert [(d.key, d.hours, d.saved_usd) for d in ledger.by_day] == [
        ("2026-11-02", 5.0, pytest.approx(12.5)), ("2026-11-03", 22.0, pytest.approx(55.0))]
    assert [(h.key, h.saved_usd) for h in ledger.by_host] == [("n1", pytest.approx(67.5))]

    short = savings_ledger(db, T0, end, horizon=timedelta(hours=6), now=end)
    assert short.saved_usd == pytest.approx(7.5 + 15.0) and "6 h" in short.assumption
    clipped = savings_ledger(db, T0 + timedelta(hours=2), T0 + timedelta(hours=3), now=end)
    assert [(r.hours, r.saved_usd) for r in clipped.rows] == [(1.0, pytest.approx(2.5))]
    running = savings_ledger(db, T0, end, now=T0 + timedelta(hours=23))  # the open stop so far: 1 h
    assert running.saved_usd == pytest.approx(7.5 + 2.5)


def test_dry_runs_are_shown_apart_as_would_have_saved(fleet: psycopg.Connection) -> None:
    db = fleet
    _event(db, "n2", T0 + timedelta(hours=2), "would_stop", action="dry-run")
    db.execute("INSERT INTO vm_evaluations (host, at, decision) VALUES ('n2', %s, 'idle'), ('n2', %s, 'active')",
               (T0 + timedelta(hours=2, minutes=30), T0 + timedelta(hours=3, minutes=30)))
    ledger = savings_ledger(db, T0, T0 + timedelta(days=1), now=T0 + timedelta(days=1))
    (row,) = ledger.rows
    assert (row.kind, row.hours, row.saved_usd) == ("would_stop", 1.5, pytest.approx(15.0))
    assert row.started_at == T0 + timedelta(hours=3, minutes=30)
    assert ledger.saved_usd == 0.0 and ledger.would_save_usd == pytest.approx(15.0)
    assert [(h.key, h.saved_usd, h.would_save_usd) for h in ledger.by_host] == [("n2", 0.0, pytest.approx(15.0))]


def test_an_agent_stop_through_the_compute_api_counts_and_an_operator_stop_does_not(
        settings: Settings, db: psycopg.Connection) -> None:
    set_price(db, SYSTEM, L4, "on_demand", Decimal("0.75"), effective_from=BOOT - timedelta(days=1))
    _gpus(db, "stream-gpu-1", L4, 2)
    _gpus(db, "stream-gpu-2", L4, 1)
    fake = FakeGce(project="p-1", zone="europe-west4-a", name="stream-gpu-1").start()
    try:
        fake.add("stream-gpu-1", "europe-west4-a", labels={"platform": "stream-platform"})
        fake.add("stream-gpu-2", "europe-west4-a", labels={"platform": "stream-platform"})
        store, clock = DbStore(settings.require_database_url()), FakeClock(BOOT + timedelta(hours=1))
        agent = make_agent(store, clock, action=GcpStop(fake.address, fake.endpoint), host="stream-gpu-1")
        stopped = run_until(agent, clock, "stop")
        assert stopped.stop is not None and fake.instances["stream-gpu-1"]["status"] == "TERMINATED"
        next_boot = stopped.stop.at + timedelta(hours=2)
        clock.now = next_boot + timedelta(minutes=1)
        make_agent(store, clock, boot=next_boot, host="stream-gpu-1").evaluate()  # records `booted`
        gcp = settings.model_copy(update={"vm_provider": "gcp", "gcp_project_id": "p-1",
                                          "compute_endpoint": fake.endpoint})
        vm.stop_vm(Principal("olga", Role.operator), "stream-gpu-2", "europe-west4-a", settings=gcp)
        assert fake.instances["stream-gpu-2"]["status"] == "TERMINATED"
    finally:
        fake.stop()
    dry_clock = FakeClock(next_boot + timedelta(hours=1))
    run_until(make_agent(store, dry_clock, FixedSignal(), host="stream-gpu-2", boot=next_boot), dry_clock, "stop")

    ledger = costs.savings_ledger(VIEWER, BOOT, BOOT + timedelta(days=1), settings=settings)
    counted = [r for r in ledger.rows if r.kind == "stopped"]
    assert [(r.host, r.gpus, r.hours, r.started_at) for r in counted] == [("stream-gpu-1", 2, 2.0, next_boot)]
    assert ledger.saved_usd == pytest.approx(3.0)  # 2 h × 2 GPUs × $0.75; the operator's stop is not counted
    assert [r.host for r in ledger.rows if r.kind == "would_stop"] == ["stream-gpu-2"]
    assert ledger.would_save_usd > 0


def test_vm_prices_are_admin_only_and_audited(db: psycopg.Connection) -> None:
    with pytest.raises(PermissionDenied):
        set_vm_price(db, Principal("olga", Role.operator), "n1", Decimal("1"))
    set_vm_price(db, Principal("root", Role.admin), "n1", Decimal("0.25"), source="quote")
    row = db.execute("SELECT actor, action, target FROM audit_log WHERE action = 'vm_price.set'").fetchone()
    assert (row["actor"], row["target"]) == ("root", "n1")


def test_savings_over_cli_and_api(settings: Settings, fleet: psycopg.Connection) -> None:
    db = fleet
    now = datetime.now(UTC).replace(microsecond=0)
    month = now.replace(day=1, hour=0, minute=0, second=0)
    _event(db, "n1", month, "stopped")
    _event(db, "n1", month + timedelta(seconds=36), "booted")  # 0.01 h × $2.50
    result = CliRunner().invoke(cli, ["costs", "savings", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["saved_usd"] == pytest.approx(0.025) and body["assumption"].startswith("auto-shutdown stops only")
    table = CliRunner().invoke(cli, ["costs", "savings", "--horizon", "2h"])
    assert table.exit_code == 0 and "assumption:" in table.output and "until the next start or 2 h" in table.output
    bad = CliRunner().invoke(cli, ["costs", "savings", "--horizon", "soon"])
    assert bad.exit_code != 0 and "--horizon" in bad.output and "Traceback" not in bad.output

    import asyncio

    import httpx

    token = create_token(db, SYSTEM, "viewer", Role.viewer).value

    async def get(path: str) -> httpx.Response:
        api = create_app(settings)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://api") as client:
            return await client.get(path, headers={"Authorization": f"Bearer {token}"})

    answer = asyncio.run(get("/api/v1/costs/savings"))
    assert answer.status_code == 200 and answer.json()["saved_usd"] == pytest.approx(0.025)
    assert asyncio.run(get("/api/v1/costs/savings?horizon_hours=0")).status_code == 422
    assert asyncio.run(get("/api/v1/costs/savings?horizon_hours=5e-324")).status_code == 422
    with pytest.raises(InvalidInput, match="at least one minute"):
        savings_ledger(db, now - timedelta(days=1), now, horizon=timedelta(hours=5e-324))


def test_costs_page_shows_the_month_by_vm_and_by_day_with_the_assumption(settings: Settings,
                                                                         fleet: psycopg.Connection) -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from backend.identity import users
    from tests.test_console_pages import MAIN, PASSWORD

    now = datetime.now(UTC).replace(microsecond=0)
    month = now.replace(day=1, hour=0, minute=0, second=0)
    _event(fleet, "n1", month, "stopped")
    _event(fleet, "n1", month + timedelta(minutes=48), "booted")  # 0.8 h × $2.50 = $2.00
    _event(fleet, "n2", month + timedelta(hours=1), "would_stop", action="dry-run")
    fleet.execute("INSERT INTO vm_evaluations (host, at, decision) VALUES ('n2', %s, 'active')",
                  (month + timedelta(hours=1, minutes=6),))  # 0.1 h × $10 = $1.00 would have saved
    users.add_user(fleet, SYSTEM, "vic", Role.viewer, PASSWORD)
    st.cache_data.clear()
    at = AppTest.from_file(MAIN, default_timeout=90)
    at.session_state["principal"] = VIEWER
    at.run().switch_page("../pages/costs.py").run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    saved = next(m for m in at.metric if m.label == "Auto-shutdown saved (month)")
    assert saved.value == "$2.00"
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "Saved by VM" in titles and "Saved by day" in titles
    assert any("Assumption: auto-shutdown stops only" in c.value for c in at.caption)
    assert any("would have saved $1.00" in c.value for c in at.caption)
