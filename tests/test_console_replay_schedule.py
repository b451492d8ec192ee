"""The console's what-if replay panel (VMs) and scheduled streams (Streams, VMs), in Streamlit's AppTest on a real
migrated database; the pages call the services only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import streamlit as st
from psycopg.types.json import Jsonb
from streamlit.testing.v1 import AppTest

from backend.config import Settings
from backend.identity import users
from backend.identity.principal import SYSTEM, Principal, Role
from backend.streams import keys, schedules
from backend.streams.pepper import key_pepper
from backend.vm.agent import host_name

MAIN = str(Path(__file__).resolve().parent.parent / "app" / "main.py")
OPERATOR = Principal("oscar", Role.operator)


@pytest.fixture(autouse=True)
def _fresh_caches(db: psycopg.Connection) -> None:
    st.cache_data.clear()
    users.add_user(db, SYSTEM, OPERATOR.name, Role.operator, "correct-horse-battery")


def _open(page: str) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=90)
    at.session_state["principal"] = OPERATOR
    at.run()
    at.switch_page(f"../pages/{page}").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_vms_page_replays_a_threshold_and_shows_the_next_scheduled_stream(settings: Settings,
                                                                          db: psycopg.Connection) -> None:
    host, start = host_name(settings), datetime.now(UTC) - timedelta(hours=3)
    busy = [{"signal": "rtmp", "state": "active", "evidence": "live"}]
    idle = [{"signal": "rtmp", "state": "idle", "evidence": "none"}]
    rows = [(host, start + timedelta(seconds=10 * i), Jsonb(busy if i < 360 or 480 <= i < 600 else idle))
            for i in range(900)]  # 1 h stream, 20 min pause, 20 min stream, 50 min idle
    with db.cursor() as cur:
        cur.executemany("INSERT INTO vm_evaluations (host, at, decision, signals) VALUES (%s, %s, 'active', %s)", rows)
    issued = keys.create_key(db, OPERATOR, key_pepper(settings), "keynote")
    opens = datetime.now(UTC) + timedelta(hours=2)
    schedules.create(db, OPERATOR, "Friday keynote", issued.key.id, host, opens, opens + timedelta(hours=1))

    at = _open("vms.py")
    instances = at.dataframe[0].value
    assert instances["scheduled"].iloc[0].startswith("starts at ") and "for stream live/keynote" in \
        instances["scheduled"].iloc[0]
    next(t for t in at.text_input if t.label == "Idle threshold").input("5m")
    next(b for b in at.button if b.label == "Replay").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Stops"] == "2" and metrics["Regret"] == "1"  # the pause and the end; the pause hurt
    assert "Assumption:" in at.caption[-1].value or any("Assumption:" in c.value for c in at.caption)


def test_streams_page_lists_schedules_and_an_operator_schedules_one(settings: Settings,
                                                                   db: psycopg.Connection) -> None:
    keys.create_key(db, OPERATOR, key_pepper(settings), "studio-9")
    at = _open("streams.py")
    assert any(i.value == "No scheduled streams." for i in at.info)
    next(t for t in at.text_input if t.label == "Name").input("Launch")
    next(t for t in at.text_input if t.label == "VM").input("stream-gpu-1")
    next(t for t in at.text_input if t.label == "Starts").input("+1h")
    next(t for t in at.text_input if t.label == "Ends").input("+2h")
    next(b for b in at.button if b.label == "Schedule").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    row = db.execute("SELECT name, vm, ends_at - starts_at AS span, grace FROM stream_schedules").fetchone()
    assert (row["name"], row["vm"], row["span"], row["grace"]) == ("Launch", "stream-gpu-1", timedelta(hours=1),
                                                                    timedelta(minutes=5))
    at.run()
    table = next(d.value for d in at.dataframe if "VM start" in d.value.columns)
    assert list(table["name"]) == ["Launch"] and list(table["state"]) == ["upcoming"]
