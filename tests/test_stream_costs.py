"""Cost per stream on real PostgreSQL: sessions from the real callbacks, hand-computed even splits."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import psycopg
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from backend.api.tokens import create_token
from backend.api_app import create_app
from backend.cli import app as cli
from backend.config import Settings
from backend.costs import service as costs
from backend.costs.catalog import set_price
from backend.costs.stream_costs import stream_costs
from backend.errors import InvalidInput
from backend.identity.principal import SYSTEM, Principal, Role
from backend.streams import keys, live
from backend.streams.callbacks import CallbackGate, CallbackRequest

L4 = "NVIDIA L4"
T0 = datetime(2026, 11, 2, 10, tzinfo=UTC)
PEPPER = "stream-cost-pepper-" + "p" * 32


def _gpus(db: psycopg.Connection, host: str, count: int) -> None:
    for index in range(count):
        db.execute("INSERT INTO gpus (gpu_uuid, host, gpu_index, model, first_seen, last_seen) "
                   "VALUES (%s, %s, %s, %s, %s, %s)", (f"GPU-{host}-{index}", host, index, L4, T0, T0))


def _key(db: psycopg.Connection, stream: str, owner: str, team: str) -> str:
    issued = keys.create_key(db, SYSTEM, PEPPER.encode(), stream, owner=owner, labels={"team": team})
    return issued.key.id


def _session(db: psycopg.Connection, stream: str, key_id: str | None, host: str | None, start: float, end: float
             ) -> None:
    db.execute("INSERT INTO stream_sessions (app, stream, key_id, host, client_id, started_at, ended_at) "
               "VALUES ('live', %s, %s, %s, '1', %s, %s)",
               (stream, key_id, host, T0 + timedelta(hours=start), T0 + timedelta(hours=end)))


@pytest.fixture
def sessions(db: psycopg.Connection) -> psycopg.Connection:
    """vm-a: 2 × L4 at $1 → $2/h. cam1 10-12 h and cam2 11-13 h on vm-a, idle 13-14 h; cam3 on a GPU-less host."""
    set_price(db, SYSTEM, L4, "on_demand", Decimal("1"), effective_from=T0 - timedelta(days=1))
    _gpus(db, "vm-a", 2)
    k1, k2 = _key(db, "cam1", "alice", "news"), _key(db, "cam2", "bob", "sports")
    _session(db, "cam1", k1, "vm-a", 0, 2)
    _session(db, "cam2", k2, "vm-a", 1, 3)
    _session(db, "cam3", None, "edge-1", 0, 1)
    return db


def test_streams_split_their_vms_gpu_hours_evenly_and_idle_stays_with_the_vm(sessions: psycopg.Connection) -> None:
    result = stream_costs(sessions, T0, T0 + timedelta(hours=4))
    rows = {r.key: r for r in result.rows}
    # cam1: 10-11 alone ($2) + 11-12 shared ($1) = $3 over 2 h; cam2 likewise: $1 + $2
    assert (rows["live/cam1"].cost_usd, rows["live/cam1"].stream_hours) == (pytest.approx(3.0), 2.0)
    assert rows["live/cam1"].usd_per_stream_hour == pytest.approx(1.5)
    assert rows["live/cam1"].gpu_hours == pytest.approx(3.0) and rows["live/cam2"].cost_usd == pytest.approx(3.0)
    # the VM cost $6 while streams were live (10-13 h); 13-14 h is its idle cost, charged to no stream
    assert result.total.cost_usd == pytest.approx(6.0) and result.total.stream_hours == 5.0
    assert rows["live/cam3"].cost_usd == 0.0 and result.unattributed_stream_hours == 1.0
    assert "split that time evenly" in result.rule and "idle cost" in result.rule
    assert [r.key for r in result.top_streams][:2] == ["live/cam1", "live/cam2"]

    owners = {r.key: r.cost_usd for r in stream_costs(sessions, T0, T0 + timedelta(hours=4), group_by="owner").rows}
    assert owners == {"alice": pytest.approx(3.0), "bob": pytest.approx(3.0), "(no owner)": 0.0}
    teams = stream_costs(sessions, T0, T0 + timedelta(hours=4), group_by="label:team").rows
    assert {r.key for r in teams} == {"news", "sports", "(none)"}
    # a window cutting through: 11:30-12:30 → cam1 0.5 h shared ($0.50), cam2 0.5 h shared + 0.5 h alone ($1.50)
    part = {r.key: r.cost_usd for r in stream_costs(sessions, T0 + timedelta(hours=1.5), T0 + timedelta(hours=2.5)
                                                   ).rows}
    assert part["live/cam1"] == pytest.approx(0.5) and part["live/cam2"] == pytest.approx(1.5)
    with pytest.raises(InvalidInput, match="group_by"):
        stream_costs(sessions, T0, T0 + timedelta(hours=4), group_by="colour")


def test_callbacks_write_durable_sessions_bound_to_streams_host(settings: Settings, db: psycopg.Connection) -> None:
    key = keys.create_key(db, SYSTEM, PEPPER.encode(), "cam1", owner="alice")
    gate_settings = settings.model_copy(update={"stream_key_pepper": SecretStr(PEPPER), "streams_host": "vm-a"})

    async def publish_then_done() -> None:
        gate = CallbackGate(gate_settings)
        try:
            req = CallbackRequest("publish", "live", "cam1", "127.0.0.1", "7", key.secret)
            assert (await gate.publish(req)).allowed
            await gate.publish_done(CallbackRequest("publish_done", "live", "cam1", "127.0.0.1", "7", key.secret))
            assert (await gate.publish(CallbackRequest("publish", "live", "cam1", "127.0.0.1", "8", key.secret))
                    ).allowed
        finally:
            await gate.close()

    asyncio.run(publish_then_done())
    assert db.execute("SELECT count(*) AS n FROM live_streams").fetchone()["n"] == 1
    rows = db.execute("SELECT stream, key_id, host, client_id, ended_at FROM stream_sessions ORDER BY id").fetchall()
    assert [(r["stream"], r["key_id"], r["host"], r["client_id"]) for r in rows] == [
        ("cam1", key.key.id, "vm-a", "7"), ("cam1", key.key.id, "vm-a", "8")]
    assert rows[0]["ended_at"] is not None and rows[1]["ended_at"] is None
    # a ghost (missed publish_done) removed by reconciliation ends its session too
    db.execute("UPDATE live_streams SET started_at = now() - interval '1 minute'")
    live.reconcile(db, [])
    assert db.execute("SELECT count(*) AS n FROM stream_sessions WHERE ended_at IS NULL").fetchone()["n"] == 0


def test_stream_costs_over_service_cli_and_api(settings: Settings, sessions: psycopg.Connection) -> None:
    window = ["--start", T0.isoformat(), "--end", (T0 + timedelta(hours=4)).isoformat()]
    by_owner = costs.stream_costs_of(Principal("vic", Role.viewer), T0, T0 + timedelta(hours=4), group_by="owner",
                                     settings=settings)
    assert by_owner.rows[0].cost_usd == pytest.approx(3.0)
    result = CliRunner().invoke(cli, ["costs", "streams", "--group-by", "key", "--json", *window])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["total"]["cost_usd"] == pytest.approx(6.0) and body["group_by"] == "key"
    table = CliRunner().invoke(cli, ["costs", "streams", *window])
    assert table.exit_code == 0 and "live/cam1" in table.output and "rule:" in table.output
    bad = CliRunner().invoke(cli, ["costs", "streams", "--group-by", "colour", *window])
    assert bad.exit_code != 0 and "group_by" in bad.output and "Traceback" not in bad.output

    token = create_token(sessions, SYSTEM, "viewer", Role.viewer).value

    async def get(query: str) -> httpx.Response:
        api = create_app(settings)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://api") as client:
            return await client.get(f"/api/v1/streams/costs?{query}", headers={"Authorization": f"Bearer {token}"})

    span = f"start={T0.isoformat().replace('+', '%2B')}&end={(T0 + timedelta(hours=4)).isoformat().replace('+', '%2B')}"
    answer = asyncio.run(get(f"{span}&group_by=label:team"))
    assert answer.status_code == 200
    assert {r["key"]: r["cost_usd"] for r in answer.json()["rows"]}["news"] == pytest.approx(3.0)
    refused = asyncio.run(get(f"{span}&group_by=colour"))
    assert refused.status_code == 400 and refused.json()["field"] == "group_by"


def test_streams_and_costs_pages_show_dollars_per_stream_hour(settings: Settings, db: psycopg.Connection) -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from backend.identity import users
    from tests.test_console_pages import MAIN, PASSWORD

    set_price(db, SYSTEM, L4, "on_demand", Decimal("1"), effective_from=T0 - timedelta(days=1))
    _gpus(db, "vm-a", 2)
    now = datetime.now(UTC).replace(microsecond=0)
    db.execute("INSERT INTO stream_sessions (app, stream, host, client_id, started_at, ended_at) VALUES "
               "('live', 'cam1', 'vm-a', '1', %s, %s), ('live', 'cam2', 'vm-a', '2', %s, %s)",
               (now - timedelta(hours=3), now - timedelta(hours=1), now - timedelta(hours=2), now - timedelta(hours=1)))
    # cam1: 1 h alone ($2) + 1 h shared ($1) = $3; cam2: $1 → $4 over 3 stream-hours
    users.add_user(db, SYSTEM, "vic", Role.viewer, PASSWORD)
    st.cache_data.clear()
    at = AppTest.from_file(MAIN, default_timeout=90)
    at.session_state["principal"] = Principal("vic", Role.viewer)
    at.run().switch_page("../pages/streams.py").run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert next(m for m in at.metric if m.label == "$ / stream-hour").value == "$1.33"
    assert next(m for m in at.metric if m.label == "Stream cost").value == "$4.00"
    at.switch_page("../pages/costs.py").run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert next(m for m in at.metric if m.label == "$ / stream-hour").value == "$1.33"
